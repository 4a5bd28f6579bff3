// Histogram buckets and quantiles, the Prometheus text and JSON of a MetricSet, and the metrics
// HTTP server's answers and bounds (a real socket on 127.0.0.1).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/histogram.hpp"
#include "telemetry/http.hpp"
#include "telemetry/metrics.hpp"

using namespace tessera;
using namespace std::chrono_literals;
namespace asio = boost::asio;

TEST(Histogram, BucketsArePowersOfTwoMicroseconds) {
  Histogram h;
  h.observe(0ns);        // bucket 0 (up to 1 µs)
  h.observe(1000ns);     // 1 µs: bucket 0
  h.observe(1001ns);     // 2 µs rounded up: (1, 2] -> bucket 1
  h.observe(3us);        // (2, 4] -> bucket 2
  h.observe(4us);        // bucket 2
  h.observe(5us);        // (4, 8] -> bucket 3
  h.observe(1s);         // 10^6 µs: (2^19, 2^20] -> bucket 20
  h.observe(3600s);      // beyond the last bound: +Inf
  h.observe(-5ns);       // a clock step back counts as 0
  EXPECT_EQ(h.bucket(0), 3u);
  EXPECT_EQ(h.bucket(1), 1u);
  EXPECT_EQ(h.bucket(2), 2u);
  EXPECT_EQ(h.bucket(3), 1u);
  EXPECT_EQ(h.bucket(20), 1u);
  EXPECT_EQ(h.bucket(Histogram::kBuckets), 1u);
  EXPECT_EQ(h.count(), 9u);
  EXPECT_NEAR(h.sum_seconds(), 3601.000014001, 1e-9);
  EXPECT_DOUBLE_EQ(Histogram::bound_seconds(0), 1e-6);
  EXPECT_DOUBLE_EQ(Histogram::bound_seconds(20), 1.048576);
}

TEST(Histogram, QuantilesAndDifferences) {
  Histogram a;
  EXPECT_EQ(a.quantile_seconds(0.99), 0);
  for (int i = 0; i < 99; ++i) a.observe(10us);  // bucket 4: (8, 16]
  a.observe(100ms);                              // bucket 17: (65536, 131072] µs
  EXPECT_DOUBLE_EQ(a.quantile_seconds(0.5), 16e-6);
  EXPECT_DOUBLE_EQ(a.quantile_seconds(0.99), 16e-6);
  EXPECT_DOUBLE_EQ(a.quantile_seconds(1.0), 0.131072);
  Histogram b = a;
  b.observe(100ms);
  Histogram d = b.since(a);
  EXPECT_EQ(d.count(), 1u);
  EXPECT_EQ(d.bucket(17), 1u);
  EXPECT_DOUBLE_EQ(d.quantile_seconds(0.5), 0.131072);
  Histogram m;
  m.merge(a);
  m.merge(d);
  EXPECT_EQ(m.count(), b.count());
  EXPECT_EQ(m.bucket(17), 2u);
}

TEST(MetricSet, PrometheusTextGroupsFamiliesAndEscapes) {
  telemetry::MetricSet ms;
  ms.counter("t_requests_total", "requests\nserved \\ here", {{"op", "update"}}, 3);
  ms.gauge("t_inflight", "running", {}, 2);
  ms.counter("t_requests_total", "ignored: the first help stays", {{"op", "a\"b\\c\nd"}}, 1);
  Histogram h;
  h.observe(3us);
  h.observe(3us);
  h.observe(2s);
  ms.histogram("t_duration_seconds", "time", {{"op", "fetch"}}, h);
  const std::string t = ms.prometheus();
  // One HELP and TYPE per family, samples together, in the order added.
  EXPECT_NE(t.find("# HELP t_requests_total requests\\nserved \\\\ here\n# TYPE t_requests_total "
                   "counter\nt_requests_total{op=\"update\"} 3\n"
                   "t_requests_total{op=\"a\\\"b\\\\c\\nd\"} 1\n"
                   "# HELP t_inflight running\n# TYPE t_inflight gauge\nt_inflight 2\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("t_duration_seconds_bucket{op=\"fetch\",le=\"1e-06\"} 0\n"), std::string::npos);
  EXPECT_NE(t.find("t_duration_seconds_bucket{op=\"fetch\",le=\"4e-06\"} 2\n"), std::string::npos);
  // 2 s = 2,000,000 µs: in (2^20, 2^21] µs.
  EXPECT_NE(t.find("t_duration_seconds_bucket{op=\"fetch\",le=\"1.048576\"} 2\n"),
            std::string::npos);
  EXPECT_NE(t.find("t_duration_seconds_bucket{op=\"fetch\",le=\"2.097152\"} 3\n"),
            std::string::npos);
  EXPECT_NE(t.find("t_duration_seconds_bucket{op=\"fetch\",le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("t_duration_seconds_sum{op=\"fetch\"} 2.000006\n"), std::string::npos);
  EXPECT_NE(t.find("t_duration_seconds_count{op=\"fetch\"} 3\n"), std::string::npos);
  EXPECT_EQ(ms.families(), 3u);
  EXPECT_THROW(ms.gauge("t_requests_total", "", {}, 1), std::logic_error);

  const auto j = ms.json();
  ASSERT_EQ(j["families"].size(), 3u);
  EXPECT_EQ(j["families"][0]["samples"][1]["labels"]["op"], "a\"b\\c\nd");
  EXPECT_EQ(j["families"][2]["samples"][0]["count"], 3);
  EXPECT_EQ(j["families"][2]["samples"][0]["buckets"][2][1], 2);
}

namespace {

// Writes `request` on a fresh connection and reads until the server closes it or `limit`.
std::string raw_exchange(const std::string& addr, const std::string& request) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  const auto colon = addr.rfind(':');
  s.connect({asio::ip::make_address(addr.substr(0, colon)),
             static_cast<uint16_t>(std::stoi(addr.substr(colon + 1)))});
  asio::write(s, asio::buffer(request));
  std::string out;
  boost::system::error_code ec;
  char buf[4096];
  while (!ec) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
  }
  return out;
}

}  // namespace

TEST(HttpServer, AnswersGetAndRefusesTheRest) {
  int calls = 0;
  telemetry::HttpServer srv("127.0.0.1:0", [&](const std::string& path) -> telemetry::HttpResponse {
    ++calls;
    if (path == "/metrics") return {200, "text/plain", "x 1\n"};
    return {404, "text/plain", "no such page\n"};
  });
  ASSERT_TRUE(srv.start().is_ok());
  const std::string addr = srv.address();
  auto body = telemetry::http_get(addr, "/metrics", 5s);
  ASSERT_TRUE(body) << body.status().to_string();
  EXPECT_EQ(*body, "x 1\n");
  auto missing = telemetry::http_get(addr, "/elsewhere", 5s);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("HTTP 404 no such page"), std::string::npos);

  std::string post = raw_exchange(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                    "Connection: close\r\n\r\nabc");
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post;
  std::string huge = raw_exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " +
                                        std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u) << huge.substr(0, 200);
  std::string garbage = raw_exchange(addr, "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  // HEAD: the headers only. Keep-alive: two requests on one connection.
  std::string head = raw_exchange(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_EQ(head.find("x 1"), std::string::npos) << head;
  std::string two = raw_exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                                   "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  size_t first = two.find("x 1\n");
  ASSERT_NE(first, std::string::npos) << two;
  EXPECT_NE(two.find("x 1\n", first + 1), std::string::npos) << two;
  // Only GET and HEAD reached the handler: 2 + 1 (HEAD) + 2 (keep-alive).
  EXPECT_EQ(calls, 5);
  srv.stop();
  EXPECT_FALSE(telemetry::http_get(addr, "/metrics", 2s));
}

namespace {
asio::ip::tcp::endpoint endpoint_of(const std::string& addr) {
  const auto colon = addr.rfind(':');
  return {asio::ip::make_address(addr.substr(0, colon)),
          static_cast<uint16_t>(std::stoi(addr.substr(colon + 1)))};
}
telemetry::HttpResponse ok_page(const std::string&) { return {200, "text/plain", "ok"}; }
}  // namespace

TEST(HttpServer, BoundsConnections) {
  telemetry::HttpServer::Options o;
  o.max_connections = 2;
  o.idle = std::chrono::minutes(5);  // the held connections stay for the whole test
  telemetry::HttpServer srv("127.0.0.1:0", ok_page, o);
  ASSERT_TRUE(srv.start().is_ok());
  const auto ep = endpoint_of(srv.address());
  asio::io_context io;
  // Two idle connections take both places; a third is closed at once, unanswered.
  std::vector<asio::ip::tcp::socket> held;
  for (int i = 0; i < 2; ++i) {
    held.emplace_back(io);
    held.back().connect(ep);
  }
  // The server counts them once it accepted them: until then a third may still be served.
  bool refused = false;
  while (!refused) {
    asio::ip::tcp::socket third(io);
    third.connect(ep);
    boost::system::error_code ec;
    asio::write(third, asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), ec);
    char c;
    third.read_some(asio::buffer(&c, 1), ec);
    refused = ec == asio::error::eof || ec == asio::error::connection_reset;
  }
  // A place frees when a connection ends.
  held.pop_back();
  bool served = false;
  while (!served) served = static_cast<bool>(telemetry::http_get(srv.address(), "/", 10s));
}

TEST(HttpServer, ClosesIdleConnections) {
  telemetry::HttpServer::Options o;
  o.idle = 200ms;
  telemetry::HttpServer srv("127.0.0.1:0", ok_page, o);
  ASSERT_TRUE(srv.start().is_ok());
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect(endpoint_of(srv.address()));
  // Half a request, then silence: the server closes it (the read returns then).
  asio::write(s, asio::buffer(std::string("GET / HTTP/1.1\r\n")));
  boost::system::error_code ec;
  char c;
  s.read_some(asio::buffer(&c, 1), ec);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
  srv.stop();
}
