"""HTTP in, JSON out: the generic gateway (match, bind, call), the checks before a request
may use the database (limits, guards, bounds), errors, middleware, and the API's
documents (/openapi.json, /docs, /metrics).
"""
