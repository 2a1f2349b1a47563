"""PostgreSQL: connections and pools, deploying (migrations, then sql/), the embedded
server, and the route table read from the catalog (with its reload and the grant cache).
"""
