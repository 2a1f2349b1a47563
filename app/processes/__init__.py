"""Several worker processes on one listening socket, sharing its connections evenly
(WORKERS > 1): the supervisor, the balanced accept, and the load the workers share."""
