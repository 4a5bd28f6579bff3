#include "mgmt/acl.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <array>

namespace tessera::mgmt {

namespace {
constexpr std::array<std::pair<char, uint32_t>, 8> kLetters = {{{'r', kRead},
                                                                {'w', kWrite},
                                                                {'c', kCreateCont},
                                                                {'d', kDelete},
                                                                {'t', kGetProp},
                                                                {'T', kSetProp},
                                                                {'a', kGetAcl},
                                                                {'A', kSetAcl}}};
constexpr std::array<const char*, 8> kWords = {
    "read", "write", "create-container", "delete", "get-prop", "set-prop", "get-acl", "set-acl"};

bool same_principal(const Ace& a, const Ace& b) {
  if (a.who != b.who) return false;
  return (a.who != Principal::user && a.who != Principal::group) || a.id == b.id;
}

std::string user_name(uint32_t uid) {
  passwd pw{};
  passwd* res = nullptr;
  char buf[1024];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != nullptr) return pw.pw_name;
  return std::to_string(uid);
}
}  // namespace

std::string perm_letters(uint32_t perms) {
  std::string s;
  for (auto [c, bit] : kLetters) {
    if ((perms & bit) != 0) s += c;
  }
  return s;
}

std::string perm_words(uint32_t perms) {
  std::string s;
  for (size_t i = 0; i < kWords.size(); ++i) {
    if ((perms & (1u << i)) == 0) continue;
    if (!s.empty()) s += ", ";
    s += kWords[i];
  }
  return s;
}

bool Cred::in_group(uint32_t g) const {
  return gid == g || std::find(groups.begin(), groups.end(), g) != groups.end();
}

Cred Cred::current() {
  Cred c;
  c.uid = ::getuid();
  c.gid = ::getgid();
  gid_t gs[256];
  int n = ::getgroups(256, gs);
  for (int i = 0; i < n; ++i) c.groups.push_back(gs[i]);
  c.user = user_name(c.uid);
  return c;
}

uint32_t Acl::perms_for(const Cred& c) const {
  if (c.uid == owner_uid) {
    for (const Ace& a : entries) {
      if (a.who == Principal::owner) return a.perms;
    }
  }
  for (const Ace& a : entries) {
    if (a.who == Principal::user && a.id == c.uid) return a.perms;
  }
  bool matched = false;
  uint32_t groups = 0;
  for (const Ace& a : entries) {
    if ((a.who == Principal::owner_group && c.in_group(owner_gid)) ||
        (a.who == Principal::group && c.in_group(a.id))) {
      matched = true;
      groups |= a.perms;
    }
  }
  if (matched) return groups;
  for (const Ace& a : entries) {
    if (a.who == Principal::everyone) return a.perms;
  }
  return 0;
}

void Acl::update(const Ace& a) {
  for (Ace& e : entries) {
    if (same_principal(e, a)) {
      e = a;
      return;
    }
  }
  entries.push_back(a);
}

bool Acl::remove(const Ace& a) {
  auto it = std::remove_if(entries.begin(), entries.end(),
                           [&](const Ace& e) { return same_principal(e, a); });
  bool found = it != entries.end();
  entries.erase(it, entries.end());
  return found;
}

std::vector<std::string> Acl::text() const {
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const Ace& a : entries) out.push_back(ace_text(a));
  return out;
}

std::string ace_text(const Ace& a) {
  switch (a.who) {
    case Principal::owner:
      return "A::OWNER@:" + perm_letters(a.perms);
    case Principal::owner_group:
      return "A:G:GROUP@:" + perm_letters(a.perms);
    case Principal::everyone:
      return "A::EVERYONE@:" + perm_letters(a.perms);
    case Principal::user:
      return fmt::format("A::{}@:{}", a.name.empty() ? std::to_string(a.id) : a.name,
                         perm_letters(a.perms));
    case Principal::group:
      return fmt::format("A:G:{}@:{}", a.name.empty() ? std::to_string(a.id) : a.name,
                         perm_letters(a.perms));
  }
  return "?";
}

Result<Ace> parse_ace(const std::string& s) {
  auto bad = [&](const std::string& why) {
    return Status(Errc::invalid_argument,
                  fmt::format("bad ACL entry '{}': {} (expected A:[G]:PRINCIPAL@:PERMS, e.g. "
                              "A::alice@:rw, A:G:GROUP@:r, A::EVERYONE@:r)",
                              s, why));
  };
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == ':') {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  if (parts.size() != 4) return bad("it needs four fields separated by ':'");
  if (parts[0] != "A") return bad("only allow entries (type A) are supported");
  bool group_flag = parts[1] == "G";
  if (!parts[1].empty() && !group_flag) return bad("flags must be empty or G");
  const std::string& p = parts[2];
  if (p.size() < 2 || p.back() != '@') return bad("the principal must end with '@'");
  Ace a;
  std::string name = p.substr(0, p.size() - 1);
  if (p == "OWNER@") {
    a.who = Principal::owner;
  } else if (p == "GROUP@") {
    a.who = Principal::owner_group;
  } else if (p == "EVERYONE@") {
    a.who = Principal::everyone;
  } else {
    a.who = group_flag ? Principal::group : Principal::user;
    a.name = name;
    bool numeric =
        std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric) {
      a.id = static_cast<uint32_t>(std::stoul(name));
    } else if (group_flag) {
      group gr{};
      group* res = nullptr;
      char buf[4096];
      if (getgrnam_r(name.c_str(), &gr, buf, sizeof(buf), &res) != 0 || res == nullptr) {
        return bad(fmt::format("no group named '{}'", name));
      }
      a.id = gr.gr_gid;
    } else {
      passwd pw{};
      passwd* res = nullptr;
      char buf[4096];
      if (getpwnam_r(name.c_str(), &pw, buf, sizeof(buf), &res) != 0 || res == nullptr) {
        return bad(fmt::format("no user named '{}'", name));
      }
      a.id = pw.pw_uid;
    }
  }
  for (char c : parts[3]) {
    auto it = std::find_if(kLetters.begin(), kLetters.end(), [c](auto& l) { return l.first == c; });
    if (it == kLetters.end()) return bad(fmt::format("unknown permission '{}' (use rwcdtTaA)", c));
    a.perms |= it->second;
  }
  return a;
}

Acl default_pool_acl(const Cred& owner) {
  Acl a{owner.uid, owner.gid, {}};
  a.entries.push_back({Principal::owner, 0, {}, kAllPerms});
  a.entries.push_back({Principal::owner_group, 0, {}, kRead | kWrite | kCreateCont | kGetProp});
  return a;
}

Acl default_cont_acl(const Cred& owner) {
  Acl a{owner.uid, owner.gid, {}};
  a.entries.push_back({Principal::owner, 0, {}, kAllPerms & ~kCreateCont});
  a.entries.push_back({Principal::owner_group, 0, {}, kRead | kWrite | kGetProp | kSetProp});
  return a;
}

Status denied(const Cred& c, uint32_t need, const std::string& what) {
  const std::string who = fmt::format("uid {} ({})", c.uid, c.user.empty() ? "?" : c.user);
  if (need == 0) return Status(Errc::permission, fmt::format("{} may not use {}", who, what));
  return Status(Errc::permission, fmt::format("{} lacks {} on {}", who, perm_words(need), what));
}

}  // namespace tessera::mgmt
