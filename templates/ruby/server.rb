# funcd's Ruby runtime server (docs/runtime-contract.md): loads a Kubeless Ruby function
# (`def handler(event, context)`, event and context hashes with symbol keys) and serves it over HTTP with
# Ruby's standard library and WEBrick (Debian: ruby-webrick).
require "json"
require "securerandom"
require "socket"
require "time"
require "webrick"

PROBLEM_BASE = "https://funcd.dev/errors#".freeze

def fail_config(message)
  $stderr.write("funcd: #{message}\n")
  exit(1)
end

def fail_load(message)
  $stderr.write("funcd: #{message}\n")
  exit(3)
end

def positive_int(name, fallback)
  raw = ENV[name]
  return fallback if raw.nil? || raw.empty?
  fail_config("#{name} #{raw.inspect} is not a positive integer") unless raw.match?(/\A\d{1,9}\z/) && raw.to_i.positive?
  raw.to_i
end

FUNCTION_DIR = File.expand_path(ENV.fetch("FUNCD_FUNCTION_DIR", "") == "" ? "." : ENV["FUNCD_FUNCTION_DIR"])
HANDLER = ENV.fetch("FUNCD_HANDLER", "") == "" ? "handler.main" : ENV["FUNCD_HANDLER"]
FUNCTION_NAME = ENV.fetch("FUNCD_FUNCTION_NAME", "") == "" ? File.basename(FUNCTION_DIR) : ENV["FUNCD_FUNCTION_NAME"]
REVISION = ENV.fetch("FUNCD_REVISION", "")
RUNTIME = ENV.fetch("FUNCD_RUNTIME", "") == "" ? "ruby" : ENV["FUNCD_RUNTIME"]
TIMEOUT_MS = positive_int("FUNCD_TIMEOUT_MS", 30_000)
MEMORY_MB = positive_int("FUNCD_MEMORY_LIMIT_MB", 256)
LISTEN = ENV.fetch("FUNCD_LISTEN", "") == "" ? "8080" : ENV["FUNCD_LISTEN"]
case (style = ENV.fetch("FUNCD_HANDLER_STYLE", ""))
when "", "auto", "kubeless"
when "lambda"
  fail_config('FUNCD_HANDLER_STYLE "lambda" is not supported by the Ruby runtime: its handlers are Kubeless\'s (def handler(event, context))')
else
  fail_config("FUNCD_HANDLER_STYLE #{style.inspect} is not one of auto, kubeless")
end

# ── output tagged with the request id ─────────────────────────────────────────────────────────────────
# Each invocation runs in a thread of its own that carries its tag; $stdout and $stderr become writers
# that prefix each line written by such a thread (docs/runtime-contract.md, "Logs").
class TaggedIO
  def initialize(io)
    @io = io
    @io.sync = true
    @partial = {}
    @lock = Mutex.new
  end

  def write(*parts)
    text = parts.join
    tag = Thread.current[:funcd_tag]
    return @io.write(text) if tag.nil?

    @lock.synchronize do
      buffered = (@partial.delete(tag) || "") + text
      lines = buffered.split("\n", -1)
      rest = lines.pop
      lines.each { |line| @io.write("#{tag}#{line}\n") }
      @partial[tag] = rest unless rest.nil? || rest.empty?
    end
    text.bytesize
  end

  # Writes what an invocation left without a newline, once it ends.
  def finish(tag)
    @lock.synchronize do
      rest = @partial.delete(tag)
      @io.write("#{tag}#{rest}\n") if rest
    end
  end

  def <<(text)
    write(text)
    self
  end

  def print(*args) = write(*args.map(&:to_s))
  def puts(*args)
    return write("\n") if args.empty?

    write(*args.flatten.map { |a| s = a.to_s; s.end_with?("\n") ? s : "#{s}\n" })
    nil
  end
  def printf(*args) = write(format(*args))
  def flush = self
  def sync = true
  def sync=(_value); end
  def fileno = @io.fileno
  def tty? = false
  def isatty = false
  def binmode = self
  def external_encoding = nil
  def respond_to_missing?(name, include_private = false) = @io.respond_to?(name, include_private)
  def method_missing(name, *args, &block) = @io.send(name, *args, &block)
end

# ── loading the handler ───────────────────────────────────────────────────────────────────────────────
dot = HANDLER.rindex(".")
fail_load("Cannot load handler #{HANDLER.inspect}: it must be file.function, e.g. handler.main") if dot.nil? || dot.zero?
file_part = HANDLER[0...dot]
FUNCTION = HANDLER[(dot + 1)..]
source = "#{file_part}.rb"
path = File.join(FUNCTION_DIR, source)
fail_load("Cannot load handler #{HANDLER.inspect}: none of #{source} exists in #{FUNCTION_DIR}") unless File.file?(path)
# Gems from a Gemfile, installed at deploy (bundle install --path); `require` finds them.
gems = File.join(FUNCTION_DIR, ".bundle_gems")
if File.directory?(gems)
  Dir.glob(File.join(gems, "ruby", "*", "gems", "*", "lib")).each { |lib| $LOAD_PATH.unshift(lib) }
end
$LOAD_PATH.unshift(FUNCTION_DIR)
before = Object.private_instance_methods(false)
begin
  load(path)
rescue ScriptError, StandardError => e
  $stderr.write("funcd: Cannot load handler #{HANDLER.inspect} from #{path}:\n#{e.class}: #{e.message}\n")
  $stderr.write(e.backtrace.reject { |l| l.include?(__FILE__) }.map { |l| "  #{l}\n" }.join) if e.backtrace
  exit(3)
end
defined_here = Object.private_instance_methods(false) - before
unless Object.private_method_defined?(FUNCTION.to_sym) || Object.method_defined?(FUNCTION.to_sym)
  names = defined_here.map(&:to_s).sort
  fail_load("Cannot load handler #{HANDLER.inspect}: the method #{FUNCTION.inspect} of #{path} is missing; " \
            "its methods are: #{names.empty? ? '(none)' : names.join(', ')}" \
            "#{names.empty? ? '' : "; deploy with --handler #{file_part}.#{names.first}"}")
end
HANDLER_ARITY = Object.instance_method(FUNCTION.to_sym).arity

# ── metrics ───────────────────────────────────────────────────────────────────────────────────────────
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10].freeze
METRICS = { calls: 0, failures: 0, sum: 0.0, counts: Array.new(BUCKETS.size, 0) }
METRICS_LOCK = Mutex.new

def record(started, failed)
  seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  METRICS_LOCK.synchronize do
    METRICS[:calls] += 1
    METRICS[:failures] += 1 if failed
    METRICS[:sum] += seconds
    BUCKETS.each_with_index { |le, i| METRICS[:counts][i] += 1 if seconds <= le }
  end
end

def render_metrics
  label = FUNCTION_NAME.gsub("\\", "\\\\\\\\").gsub('"', '\\"').gsub("\n", "\\n")
  METRICS_LOCK.synchronize do
    out = +"# HELP function_calls_total Invocations of the function.\n# TYPE function_calls_total counter\n"
    out << "function_calls_total{function=\"#{label}\"} #{METRICS[:calls]}\n"
    out << "# HELP function_failures_total Invocations that failed.\n# TYPE function_failures_total counter\n"
    out << "function_failures_total{function=\"#{label}\"} #{METRICS[:failures]}\n"
    out << "# HELP function_duration_seconds Invocation duration.\n# TYPE function_duration_seconds histogram\n"
    BUCKETS.each_with_index do |le, i|
      out << "function_duration_seconds_bucket{function=\"#{label}\",le=\"#{le.to_s.sub(/\.0\z/, '')}\"} #{METRICS[:counts][i]}\n"
    end
    out << "function_duration_seconds_bucket{function=\"#{label}\",le=\"+Inf\"} #{METRICS[:calls]}\n"
    out << "function_duration_seconds_sum{function=\"#{label}\"} #{format('%.9f', METRICS[:sum])}\n"
    out << "function_duration_seconds_count{function=\"#{label}\"} #{METRICS[:calls]}\n"
  end
end

# ── invocations ───────────────────────────────────────────────────────────────────────────────────────
def problem(status, slug, code, title, detail)
  JSON.generate({ type: PROBLEM_BASE + slug, title: title, status: status, detail: detail, code: code })
end

def send_answer(res, status, type, body)
  res.status = status
  res["content-type"] = type if type
  res.body = [204, 304].include?(status) ? "" : body
  res["content-length"] = res.body.bytesize.to_s
  res["connection"] = "keep-alive"
end

# WEBrick capitalises header names (X-Request-Id); funcd's runtimes send them lower-case, as the
# handler or the server set them (HTTP/1.1 names are case-insensitive, but raw-head readers compare).
module LowerCaseHeaders
  def send_header(socket)
    return super unless @http_version.major.positive?

    data = status_line.dup
    @header.each { |key, value| data << "#{key}: #{check_header(value)}\r\n" }
    @cookies.each { |cookie| data << "set-cookie: #{check_header(cookie.to_s)}\r\n" }
    data << "\r\n"
    socket.write(data)
  end
end
WEBrick::HTTPResponse.prepend(LowerCaseHeaders)

# What a handler's response object offers: status and headers, set before the result is sent.
class FunctionResponse
  attr_accessor :status
  attr_reader :headers

  def initialize
    @status = nil
    @headers = {}
  end

  def set_header(name, value) = (@headers[name.to_s.downcase] = value.to_s)
  def []=(name, value)
    set_header(name, value)
  end
end

def decode(body, method, type)
  media = type.to_s.split(";").first.to_s.strip.downcase
  if body.empty?
    return %w[GET HEAD].include?(method) ? nil : ""
  end
  if media == "application/json" || media.end_with?("+json")
    JSON.parse(body)
  elsif media.start_with?("text/") || media == "application/x-www-form-urlencoded"
    body.dup.force_encoding(Encoding::UTF_8)
  else
    body.b
  end
end

def query_of(raw)
  query = {}
  URI.decode_www_form(raw.to_s).each do |key, value|
    query[key] = query.key?(key) ? [*query[key], value] : value
  end
  query
end

def invoke(req, res, request_id)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  body = req.body.to_s
  begin
    data = decode(body, req.request_method, req["content-type"])
  rescue JSON::ParserError => e
    return send_answer(res, 400, "application/problem+json",
                       problem(400, "bad-request", "BAD_REQUEST", "Bad request", "The request body is not valid JSON: #{e.message}"))
  end
  headers = {}
  req.each { |name, value| headers[name.downcase] = value }
  ce = {}
  headers.each { |name, value| ce[name.delete_prefix("ce-")] = value if name.start_with?("ce-") }
  response = FunctionResponse.new
  event = {
    data: data,
    "event-id": headers["event-id"] || request_id,
    "event-type": headers["event-type"] || headers["content-type"] || "application/json",
    "event-time": headers["event-time"] || Time.now.utc.strftime("%Y-%m-%dT%H:%M:%S.%LZ"),
    "event-namespace": headers["event-namespace"] || "funcd",
    method: req.request_method,
    path: req.path,
    query: query_of(req.query_string),
    headers: headers,
    ce: ce,
    extensions: { request: req, response: response },
  }
  ce.each { |name, value| event[:"ce-#{name}"] = value }
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + TIMEOUT_MS / 1000.0
  context = {
    "function-name": FUNCTION_NAME, "timeout": (TIMEOUT_MS / 1000.0).ceil, "runtime": RUNTIME,
    "memory-limit": "#{MEMORY_MB}Mi", functionName: FUNCTION_NAME, timeoutMs: TIMEOUT_MS,
    memoryLimit: "#{MEMORY_MB}Mi", requestId: request_id, revision: REVISION,
    remaining: -> { [((deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)) * 1000).round, 0].max }
  }
  tag = "\x1e#{request_id[0, 200].gsub(/[\x00-\x1f\x7f]/, '?')}\x1f"
  worker = Thread.new do
    Thread.current[:funcd_tag] = tag
    Thread.current.report_on_exception = false
    HANDLER_ARITY == 1 ? send(FUNCTION, event) : send(FUNCTION, event, context)
  end
  begin
    # join raises what the handler raised.
    if worker.join(TIMEOUT_MS / 1000.0).nil?
      res["x-funcd-recycle"] = "1"
      send_answer(res, 408, "application/problem+json",
                  problem(408, "function-timeout", "FUNCTION_TIMEOUT", "Function timed out",
                          "Function \"#{FUNCTION_NAME}\" did not finish within its timeout of #{TIMEOUT_MS} ms"))
      return record(started, true)
    end
    result = worker.value
  rescue Exception => e # rubocop:disable Lint/RescueException -- whatever the handler raised is its failure
    fail_invocation(res, tag, e)
    return record(started, true)
  ensure
    $stdout.finish(tag) if $stdout.respond_to?(:finish)
    $stderr.finish(tag) if $stderr.respond_to?(:finish)
  end
  begin
    status = answer(res, result, response)
  rescue StandardError => e
    fail_invocation(res, tag, e)
    return record(started, true)
  end
  record(started, status >= 500)
end

def fail_invocation(res, tag, error)
  detail = "#{error.class.name}: #{error.message}"
  lines = ["funcd: function \"#{FUNCTION_NAME}\" failed: #{detail}"]
  lines += (error.backtrace || []).reject { |l| l.include?(__FILE__) }.map { |l| "  #{l}" }
  STDERR.write(lines.map { |l| "#{tag}#{l}\n" }.join) # already tagged: straight to the real stderr
  request_id = res["x-request-id"]
  res.header.clear # what the handler set does not label the problem
  res["x-request-id"] = request_id
  send_answer(res, 500, "application/problem+json",
              problem(500, "function-error", "FUNCTION_ERROR", "The function threw an error", detail))
end

class NotSerializable < TypeError; end

def to_json_strict(value)
  JSON.generate(value)
rescue JSON::GeneratorError, NotImplementedError => e
  raise TypeError, "#{value.class} is not JSON serializable (#{e.message})"
end

def answer(res, result, response)
  response.headers.each { |name, value| res[name] = value }
  status = response.status || 200
  if result.is_a?(Hash) && (result.key?(:statusCode) || result.key?("statusCode")) &&
     (code = result[:statusCode] || result["statusCode"]).is_a?(Integer)
    headers = result[:headers] || result["headers"] || {}
    headers.each { |name, value| res[name.to_s.downcase] = value.to_s }
    body = result.key?(:body) ? result[:body] : result["body"]
    base64 = result[:isBase64Encoded] || result["isBase64Encoded"]
    if base64 && body.is_a?(String)
      body = body.unpack1("m")
      send_answer(res, code, res["content-type"] ? nil : "application/octet-stream", body)
    elsif body.is_a?(String)
      send_answer(res, code, res["content-type"] ? nil : (body.encoding == Encoding::BINARY ? "application/octet-stream" : "text/plain; charset=utf-8"), body)
    elsif body.nil?
      send_answer(res, code, nil, "")
    else
      send_answer(res, code, res["content-type"] ? nil : "application/json", to_json_strict(body))
    end
    return code
  end
  case result
  when nil
    send_answer(res, status, nil, "")
  when String
    if result.encoding == Encoding::BINARY
      send_answer(res, status, res["content-type"] ? nil : "application/octet-stream", result)
    else
      send_answer(res, status, res["content-type"] ? nil : "text/plain; charset=utf-8", result)
    end
  else
    send_answer(res, status, res["content-type"] ? nil : "application/json", to_json_strict(result))
  end
  status
end

# ── the HTTP server ───────────────────────────────────────────────────────────────────────────────────
class FunctionServlet < WEBrick::HTTPServlet::AbstractServlet
  def service(req, res)
    request_id = req["x-request-id"].to_s
    request_id = SecureRandom.uuid if request_id.empty?
    res["x-request-id"] = request_id
    if req["x-funcd-invoke"] != "1" && %w[GET HEAD].include?(req.request_method)
      case req.path
      when "/healthz"
        return send_answer(res, 200, "application/json", '{"status":"ready"}')
      when "/metrics"
        return send_answer(res, 200, "text/plain; version=0.0.4; charset=utf-8", render_metrics)
      end
    end
    invoke(req, res, request_id)
  end
end

server_options = {
  Logger: WEBrick::Log.new(File::NULL), AccessLog: [], DoNotListen: true,
  # Idle kept-alive connections must not hold up a stopping instance for long.
  KeepAliveTimeout: 1, MaxClients: 1000,
}
server = WEBrick::HTTPServer.new(server_options)
begin
  if LISTEN.start_with?("/")
    File.delete(LISTEN) if File.exist?(LISTEN) # left by a killed instance
    server.listeners << UNIXServer.new(LISTEN)
  else
    host, _, port = LISTEN.rpartition(":")
    fail_config("FUNCD_LISTEN #{LISTEN.inspect} is not a socket path, port or host:port") unless port.match?(/\A\d{1,5}\z/) && port.to_i <= 65_535
    server.listeners.concat(WEBrick::Utils.create_listeners(host.empty? ? nil : host.delete_prefix("[").delete_suffix("]"), port.to_i))
  end
rescue SystemCallError => e
  fail_config("cannot listen on #{LISTEN}: #{e.message}")
end
server.mount("/", FunctionServlet)
$stdout.flush
$stdout = TaggedIO.new($stdout)
$stderr = TaggedIO.new($stderr)
%w[TERM INT].each do |signal|
  trap(signal) { Thread.new { server.shutdown } }
end
server.start
File.delete(LISTEN) if LISTEN.start_with?("/") && File.exist?(LISTEN)
exit(0)
