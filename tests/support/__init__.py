"""Helpers the tests share: plain functions, classes and constants, one module by what
they hold. Fixtures stay in the conftest.py files (one used across directories in
tests/conftest.py); a test module imports helpers from here, never from another test
module or another directory's conftest.py."""
