# Kubeless's Ruby example, unchanged in spirit: a greeting, and the body when there is one.
def foo(event, context)
  data = event[:data]
  data.nil? || data == "" ? "hello world from #{context[:'function-name']}" : data
end
