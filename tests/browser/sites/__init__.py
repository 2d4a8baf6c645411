"""One tiny site per web framework, each run as its own process by the browser tests."""
