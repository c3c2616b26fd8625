"""gRPC servicers only: proto in, domain call, proto out."""
