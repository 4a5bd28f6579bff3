// A small HTTP/1.1 server for the metrics endpoint, and the GET its readers use (Boost.Beast).
//
// HttpServer runs on a thread of its own (never a target's): it accepts connections, reads
// GET and HEAD requests (headers up to 8 KiB, no body; anything else is answered 405, 400 or
// 431 and the connection closed) and answers each with what the handler returns for its path.
// Bounds: at most `max_connections` at once (more are closed as they come), each closed after
// `idle` without a whole request or a written reply; keep-alive is served. The handler runs on
// the server's thread, one request at a time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/status.hpp"

namespace tessera::telemetry {

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const std::string& path)>;
  struct Options {
    size_t max_connections = 16;
    std::chrono::milliseconds idle{10000};
  };
  // `listen`: host:port (numeric address; port 0: any free port).
  HttpServer(std::string listen, Handler handler, Options o);
  HttpServer(std::string listen, Handler handler) : HttpServer(std::move(listen), std::move(handler), Options{}) {}
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the thread; the error names the address.
  Status start();
  // Closes the listener and every connection and joins the thread.
  void stop();
  // host:port actually bound (after start()).
  const std::string& address() const { return bound_; }

  struct Impl;

 private:
  std::string listen_;
  Handler handler_;
  Options opts_;
  std::string bound_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

// GET http://addr/path; the body when the status is 200. Waits at most `timeout` in all;
// refuses a body over `max_body` bytes.
Result<std::string> http_get(const std::string& addr, const std::string& path,
                             std::chrono::milliseconds timeout, size_t max_body = 64u << 20);

}  // namespace tessera::telemetry
