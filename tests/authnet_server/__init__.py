"""A test server for Authorize.net's XML API (see server.py); never imported by production code."""
