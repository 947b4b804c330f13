# A Kubeless Python function as Kubeless' examples write it: handler "hello.foo".
def foo(event, context):
    return "hello world from %s (runtime %s)" % (context["function-name"], context["runtime"])
