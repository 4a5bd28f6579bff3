// Finding the management service's leader among its access points (mgmt/leader.hpp): the
// access-point list, the follower's answer, and LeaderFinder's search over a scripted set of
// answers (the real path runs in tests/integration/access_points_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "mgmt/leader.hpp"

using namespace tessera;
using namespace tessera::mgmt;

TEST(AccessPointList, ParsesAndRefusesWhatIsNotAList) {
  auto l = parse_access_points("0@10.0.0.1:10001@10.0.0.1:10101, 1@10.0.0.2:10001@10.0.0.2:10101");
  ASSERT_TRUE(l.is_ok()) << l.status().to_string();
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[1].rank, 1u);
  EXPECT_EQ((*l)[1].control, "10.0.0.2:10001");
  EXPECT_EQ((*l)[1].raft, "10.0.0.2:10101");
  EXPECT_EQ(access_points_text(*l),
            "0@10.0.0.1:10001@10.0.0.1:10101,1@10.0.0.2:10001@10.0.0.2:10101");
  for (const char* bad :
       {"", "0@a:1", "x@a:1@b:2", "0@a:1@a:1", "0@a:1@b:2,0@c:3@d:4", "0@a@b:2", "0@a:1@b:x",
        "0@a:1@b:0", "0@a:1@b:65536", "0@a:1@b:", "-1@a:1@b:2", "9999999999@a:1@b:2",
        "0@a:1@b:2,1@c:1@d:2,2@e:1@f:2,3@g:1@h:2,4@i:1@j:2,5@k:1@l:2,6@m:1@n:2,"
        "7@o:1@p:2"}) {
    auto r = parse_access_points(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), Errc::invalid_argument) << bad;
    }
  }
}

TEST(AccessPointList, AFollowersAnswerNamesTheLeaderOrNone) {
  EXPECT_EQ(leader_hint(not_leader("10.0.0.3:10001")), "10.0.0.3:10001");
  EXPECT_EQ(leader_hint(not_leader("")), "");
  EXPECT_EQ(not_leader("").code(), Errc::not_leader);
  // Only a not_leader answer carries a hint.
  EXPECT_EQ(leader_hint(Status(Errc::not_found, "; the leader is at 1.2.3.4:5")), "");
}

namespace {
// Scripted access points: what each answers, and the order they were asked in.
struct Script {
  std::map<std::string, Status> answer;  // missing: not reached (nothing listens)
  std::vector<std::string> asked;
  Result<int> operator()(const std::string& addr, bool& reached) {
    asked.push_back(addr);
    auto it = answer.find(addr);
    if (it == answer.end()) {
      reached = false;
      return Status(Errc::unreachable, "cannot reach " + addr);
    }
    if (!it->second.is_ok()) return it->second;
    return 7;
  }
};
}  // namespace

TEST(LeaderFinder, FollowsTheHintSkipsTheDeadAndRemembersTheLeader) {
  LeaderFinder f("a:1,b:2,c:3");
  Script s;
  // a is dead, b is a follower naming c, c leads.
  s.answer["b:2"] = not_leader("c:3");
  s.answer["c:3"] = Status();
  auto fn = [&](const std::string& a, bool& r) { return s(a, r); };
  auto r = f.call<int>(std::chrono::milliseconds(5000), fn);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(s.asked, (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  EXPECT_EQ(f.current(), "c:3");
  s.asked.clear();
  ASSERT_TRUE(f.call<int>(std::chrono::milliseconds(5000), fn).is_ok());
  EXPECT_EQ(s.asked, (std::vector<std::string>{"c:3"}));  // the leader first
}

TEST(LeaderFinder, AnAnswerIsNeverSentAgainElsewhere) {
  // A reached access point's error (other than not_leader) is the answer: the command may
  // have been applied, so no other access point is asked.
  LeaderFinder f("a:1,b:2");
  Script s;
  s.answer["a:1"] = Status(Errc::unreachable, "rank 3: connection closed");
  s.answer["b:2"] = Status();
  auto r = f.call<int>(std::chrono::milliseconds(5000),
                       [&](const std::string& a, bool& reached) { return s(a, reached); });
  EXPECT_EQ(r.status().code(), Errc::unreachable);
  EXPECT_EQ(s.asked, (std::vector<std::string>{"a:1"}));
}

TEST(LeaderFinder, WithNoLeaderItGivesUpAtItsDeadlineWithTheLastAnswer) {
  LeaderFinder f("a:1,b:2,c:3");
  Script s;
  s.answer["a:1"] = not_leader("");
  s.answer["b:2"] = not_leader("");
  auto r = f.call<int>(std::chrono::milliseconds(600),
                       [&](const std::string& a, bool& reached) { return s(a, reached); });
  EXPECT_FALSE(r.is_ok());
  EXPECT_TRUE(r.status().code() == Errc::not_leader || r.status().code() == Errc::unreachable)
      << r.status().to_string();
  EXPECT_GE(s.asked.size(), 3u);  // went round
  // The error says there is no leader, and what each access point said.
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("no leader among the access points a:1,b:2,c:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a:1: "), std::string::npos) << msg;
  EXPECT_NE(msg.find("c:3: "), std::string::npos) << msg;
  // One address: an unreachable service is the answer at once.
  LeaderFinder one("a:1");
  Script t;
  auto r1 = one.call<int>(std::chrono::milliseconds(5000),
                          [&](const std::string& a, bool& reached) { return t(a, reached); });
  EXPECT_EQ(r1.status().code(), Errc::unreachable);
  EXPECT_EQ(t.asked.size(), 1u);
}

// A search whose time runs out at its first, unreachable access point (a host cut off answers
// nothing: its connect takes longer than the search may) begins the next search at the next
// access point, so that repeated short searches reach every one.
TEST(LeaderFinder, ASearchCutShortResumesAtTheNextAccessPoint) {
  LeaderFinder f("a:1,b:2,c:3");
  Script s;
  s.answer["b:2"] = not_leader("c:3");
  s.answer["c:3"] = Status();
  // The first search finds c:3; then c:3 goes silent.
  ASSERT_TRUE(f.call<int>(std::chrono::milliseconds(1000),
                          [&](const std::string& a, bool& reached) { return s(a, reached); }));
  EXPECT_EQ(f.current(), "c:3");
  s.answer.erase("c:3");
  s.answer["a:1"] = Status();  // the new leader
  s.asked.clear();
  auto asked_a = [&] { return std::find(s.asked.begin(), s.asked.end(), "a:1") != s.asked.end(); };
  for (int i = 0; i < 3 && !asked_a(); ++i) {
    // No time at all: each search tries one access point.
    (void)f.call<int>(std::chrono::milliseconds(0),
                      [&](const std::string& a, bool& reached) { return s(a, reached); });
  }
  EXPECT_EQ(s.asked.front(), "c:3");
  EXPECT_TRUE(asked_a()) << "every short search began at the silent access point";
  EXPECT_EQ(f.current(), "a:1");
}
