"""Authorize.net adapter: XML API built with `authorizenet.apicontractsv1`, sent with httpx, read with lxml."""
