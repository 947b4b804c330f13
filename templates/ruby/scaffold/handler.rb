# The funcd function {{name}}, in Kubeless's Ruby style: `main` (or `handler`) is called once per request.
#
# - event[:data] is the body (a Hash for JSON, a String otherwise), plus event[:method], event[:path],
#   event[:query] and event[:headers];
# - context[:"function-name"], context[:requestId] and context[:remaining].call (milliseconds left).
#
# Return a String, a Hash or Array (sent as JSON), or { statusCode:, headers:, body: } for full control.
# puts output is logged with the request's id.
def main(event, context)
  data = event[:data].is_a?(Hash) ? event[:data] : {}
  name = data["name"] || event[:query]["name"] || "world"
  { message: "Hello, #{name}!", from: context[:"function-name"] }
end
