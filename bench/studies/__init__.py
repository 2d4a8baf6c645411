"""One-off comparisons: measured once to make a decision, kept to rerun by hand.

Nothing here is part of ``make bench``; each module says what it compared and how to run it.
"""
