"""The template tag library of the Django app: ``{% load immortus %}`` (see :mod:`.immortus`)."""
