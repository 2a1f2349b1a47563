"""The HTTP server's processes (serving.py: uvicorn alone, or several workers); with
WORKERS > 1, several on one listening socket sharing its connections evenly: the
supervisor, the balanced accept, and the load the workers share."""
