"""funcd's Python runtime server, started as `python3 server.py` (see docs/runtime-contract.md and the
README beside server.py). One job per module:

- runtime.py: configuration, loading the handler, invocations (worker threads, the event loop,
  timeouts), metrics, main()
- generic.py: generic mode for the warm pool, and its one specialization into a function
- http1.py: the HTTP/1.1 server, a thread per keep-alive connection, and draining on SIGTERM
- output.py: sys.stdout and sys.stderr, tagged with the request id of the invocation writing
- responses.py: handler results and failures as HTTP responses
- kubeless.py: the Kubeless handler style (event, context, extensions.request and .response)
- lambda_style.py: the Lambda handler style, imported only by functions that use it
"""
