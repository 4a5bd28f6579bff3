#include <gtest/gtest.h>

#include "core/config.hpp"

using namespace tessera;

TEST(Config, ParsesSizes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("64M"), 64ull << 20);
  EXPECT_EQ(*parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(*parse_size("1k"), 1024u);
  EXPECT_FALSE(parse_size("").is_ok());
  EXPECT_FALSE(parse_size("12Q").is_ok());
  EXPECT_FALSE(parse_size("M").is_ok());
  EXPECT_FALSE(parse_size("99999999999999999999").is_ok());
}

TEST(Config, ParsesYamlAndRejectsUnknownKeys) {
  auto c = parse_engine_config(
      "rank: 3\nlisten: 127.0.0.1:0\nprovider: shm\ntargets: 2\ncpus: [1, 0]\n"
      "storage_dir: /tmp/x\nstorage_size: 128M\nblock_backend: aio\nbusy_poll: false\n"
      "system_key: /etc/tessera/system.key\nnode_keys: /etc/tessera/nodes\n"
      "metrics: 10.0.0.5:9464\n");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->rank, 3u);
  EXPECT_EQ(c->metrics, "10.0.0.5:9464");
  EXPECT_EQ(EngineConfig().metrics, "127.0.0.1:0");
  EXPECT_EQ(c->provider, "shm");
  EXPECT_EQ(c->storage_bytes, 128ull << 20);
  EXPECT_EQ(c->cpus, (std::vector<int>{1, 0}));
  EXPECT_EQ(c->system_key, "/etc/tessera/system.key");
  EXPECT_EQ(c->node_keys, "/etc/tessera/nodes");
  EXPECT_TRUE(validate(*c).is_ok());

  auto bad = parse_engine_config("targts: 2\n");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("unknown config key 'targts'"), std::string::npos);
  EXPECT_FALSE(parse_engine_config("targets: [oops\n").is_ok());
  EXPECT_FALSE(parse_engine_config("targets: many\n").is_ok());
}

TEST(Config, ValidateNamesTheProblem) {
  EngineConfig c;
  c.provider = "carrier-pigeon";
  auto st = validate(c);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("carrier-pigeon"), std::string::npos);
  EngineConfig d;
  d.cpus = {0, 1, 2};
  EXPECT_FALSE(validate(d).is_ok());  // 3 CPUs for 2 targets
  EngineConfig e;
  e.cpus = {0, 999};
  EXPECT_FALSE(validate(e).is_ok());
  EngineConfig f;
  f.storage_bytes = 1 << 20;
  EXPECT_FALSE(validate(f).is_ok());
  EngineConfig g;
  // Without a key an engine would authenticate nothing: that must be asked for.
  Status nokey = validate(g);
  ASSERT_FALSE(nokey.is_ok());
  EXPECT_NE(nokey.message().find("no system key"), std::string::npos) << nokey.to_string();
  g.insecure = true;
  EXPECT_TRUE(validate(g).is_ok());
  EXPECT_EQ(g.cpus.size(), 2u);
  // Heartbeats at most every half of the silence that marks an engine dead.
  EngineConfig h;
  h.insecure = true;
  h.mgmt_heartbeat_ms = 6000;
  Status beat = validate(h);
  ASSERT_FALSE(beat.is_ok());
  EXPECT_NE(beat.message().find("mgmt_heartbeat_ms (6000)"), std::string::npos) << beat.to_string();
  h.mgmt_heartbeat_ms = 0;
  EXPECT_FALSE(validate(h).is_ok());
  h.mgmt_heartbeat_ms = 20;
  EXPECT_TRUE(validate(h).is_ok());
}

// Every value error names its key, its line and the type wanted; a key given twice is an error
// (yaml-cpp would let the later one win silently); `cpus` takes the flag's text form too.
TEST(Config, ValueErrorsNameTheKeyAndTypeAndDuplicatesAreRefused) {
  struct Case {
    const char* yaml;
    const char* want;
  };
  for (const Case& c :
       {Case{"targets: 1\ntargets: 2\n", "line 2: key 'targets' given twice (first at line 1)"},
        Case{"targets: -1\n", "line 1: targets must be a whole number 1..64, not '-1'"},
        Case{"rank: 0\nbusy_poll: yes please\n",
             "line 2: busy_poll must be true or false, not 'yes please'"},
        Case{"swim_period_ms: soon\n", "swim_period_ms must be a whole number"},
        Case{"cpus: 0,x\n", "line 1: cpus: 'x' is not a CPU number"},
        Case{"storage_size: [1]\n", "storage_size must be a size like 1G"}}) {
    auto r = parse_engine_config(c.yaml);
    ASSERT_FALSE(r.is_ok()) << c.yaml;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos)
        << c.yaml << " -> " << r.status().message();
  }
  auto cpus = parse_engine_config("targets: 2\ncpus: 1,0\n");
  ASSERT_TRUE(cpus.is_ok()) << cpus.status().to_string();
  EXPECT_EQ(cpus->cpus, (std::vector<int>{1, 0}));

  // The spin window: 100 µs unless given; 0 sleeps at once; beyond 10 ms is refused.
  EXPECT_EQ(EngineConfig{}.spin_us, 100u);
  auto spin = parse_engine_config("spin_us: 0\ninsecure: true\n");
  ASSERT_TRUE(spin.is_ok()) << spin.status().to_string();
  EXPECT_EQ(spin->spin_us, 0u);
  EXPECT_TRUE(validate(*spin).is_ok());
  auto long_spin = parse_engine_config("spin_us: 20000\ninsecure: true\n");
  ASSERT_TRUE(long_spin.is_ok());
  Status sst = validate(*long_spin);
  ASSERT_FALSE(sst.is_ok());
  EXPECT_NE(sst.message().find("spin_us must be 0..10000 (got 20000)"), std::string::npos)
      << sst.message();

  // Reclaim cannot be turned off: a pool aggregates again after a rebuild only once every
  // target reclaimed.
  auto no_reclaim = parse_engine_config("reclaim_interval_ms: 0\ninsecure: true\n");
  ASSERT_TRUE(no_reclaim.is_ok());
  Status rst = validate(*no_reclaim);
  ASSERT_FALSE(rst.is_ok());
  EXPECT_NE(rst.message().find("reclaim_interval_ms must be above 0"), std::string::npos)
      << rst.message();

  auto level = parse_engine_config("log_level: verbose\n");
  ASSERT_TRUE(level.is_ok());
  Status st = validate(*level);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("log_level 'verbose' is unknown"), std::string::npos) << st.message();
}

TEST(Config, AccessPointsAsAListOrItsTextForm) {
  auto c = parse_engine_config(
      "access_points:\n"
      "  - {rank: 0, control: \"10.0.0.1:10001\", raft: \"10.0.0.1:10101\"}\n"
      "  - {rank: 1, control: \"10.0.0.2:10001\", raft: \"10.0.0.2:10101\"}\n");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->access_points, "0@10.0.0.1:10001@10.0.0.1:10101,1@10.0.0.2:10001@10.0.0.2:10101");
  auto t = parse_engine_config("access_points: \"0@a:1@b:2\"\n");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->access_points, "0@a:1@b:2");
  auto bad = parse_engine_config("access_points:\n  - {rank: 0, control: \"a:1\"}\n");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("{rank, control, raft}"), std::string::npos)
      << bad.status().message();
}
