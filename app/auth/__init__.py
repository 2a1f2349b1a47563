"""Who is asking: API keys and signed tokens turned into a role. PostgreSQL's grants decide
what that role may do.
"""
