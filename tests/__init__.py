"""Test suite package (lets tests import each other as tests.*)."""
