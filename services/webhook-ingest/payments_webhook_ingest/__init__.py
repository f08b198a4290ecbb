"""webhook-ingest"""
