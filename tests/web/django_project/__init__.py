"""A Django project for the adapter's tests: immortus's routes and the views a user writes."""
