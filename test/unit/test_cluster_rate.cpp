/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Cluster-wide rates (rate_scope=cluster): the record field, the batch
 * arithmetic (ak_rate_lease_want, _tau), the Redis-side GCRA
 * (ak_gcra_grant, which the module's script computes), the node's
 * admission on leased tokens (ak_limits_admit_ex), and simulated nodes
 * sharing one Redis GCRA under uneven load: the admitted rate within the
 * issue's 10% of the configured one.
 */

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "ak_core.h"
#include "ak_record_util.h"

using aktest::build;
using aktest::make;

TEST(ClusterRate, RecordField)
{
    auto c = make({ { "rate", "10/s" }, { "rate_scope", "cluster" } });
    ASSERT_EQ(c->view_rc, 0);
    EXPECT_EQ(c->rec.rate_scope, AK_RATE_SCOPE_CLUSTER);

    auto n = make({ { "rate", "10/s" }, { "rate_scope", "node" } });
    ASSERT_EQ(n->view_rc, 0);
    EXPECT_EQ(n->rec.rate_scope, AK_RATE_SCOPE_NODE);

    /* absent or empty: the zone's default */
    auto d = make({ { "rate", "10/s" }, { "rate_scope", "" } });
    ASSERT_EQ(d->view_rc, 0);
    EXPECT_EQ(d->rec.rate_scope, AK_RATE_SCOPE_DEFAULT);

    /* without a rate: checked, not kept */
    auto w = make({ { "owner", "o" }, { "rate_scope", "cluster" } });
    ASSERT_EQ(w->view_rc, 0);
    EXPECT_EQ(w->rec.rate_scope, AK_RATE_SCOPE_DEFAULT);

    /* everything else is a bad record naming the field */
    for (const char *bad : { "Cluster", "nodes", "global", " node", "1" }) {
        auto b = build({ { "rate", "10/s" }, { "rate_scope", bad } });
        EXPECT_EQ(b.len, -1) << bad;
        EXPECT_NE(std::strstr(b.err.msg, "rate_scope"), nullptr) << b.err.msg;
        EXPECT_NE(std::strstr(b.err.msg, "expected node or cluster"), nullptr)
            << b.err.msg;
        b = build({ { "rate_scope", bad } });
        EXPECT_EQ(b.len, -1) << "without a rate too: " << bad;
    }

    /* a blob saying rate_scope with a value out of range is corrupt */
    auto r = build({ { "rate", "10/s" }, { "rate_scope", "cluster" } });
    ASSERT_GT(r.len, 0);
    ASSERT_EQ(r.blob.back(), AK_RATE_SCOPE_CLUSTER);
    ak_record_t rec;
    for (unsigned char v : { 0, 3, 0x7f }) {
        std::vector<unsigned char> c2 = r.blob;
        c2.back() = v;
        EXPECT_EQ(ak_record_view(aktest::test_hash(), c2.data(), c2.size(),
                                 &rec),
                  -1) << int(v);
    }
}

TEST(ClusterRate, ScopeResolution)
{
    ak_record_t rec;
    std::memset(&rec, 0, sizeof(rec));

    EXPECT_EQ(ak_rate_scope(&rec, AK_RATE_SCOPE_NODE), AK_RATE_SCOPE_NODE);
    EXPECT_EQ(ak_rate_scope(&rec, AK_RATE_SCOPE_CLUSTER),
              AK_RATE_SCOPE_CLUSTER);
    rec.rate_scope = AK_RATE_SCOPE_NODE;
    EXPECT_EQ(ak_rate_scope(&rec, AK_RATE_SCOPE_CLUSTER), AK_RATE_SCOPE_NODE);
    rec.rate_scope = AK_RATE_SCOPE_CLUSTER;
    EXPECT_EQ(ak_rate_scope(&rec, AK_RATE_SCOPE_NODE), AK_RATE_SCOPE_CLUSTER);
    EXPECT_EQ(ak_rate_scope(nullptr, AK_RATE_SCOPE_DEFAULT),
              AK_RATE_SCOPE_NODE);
}

TEST(ClusterRate, BatchArithmetic)
{
    /* 100 ms of the rate; one at a time at low rates; capped */
    EXPECT_EQ(ak_rate_lease_want(1000), 100u);          /* 1000/s */
    EXPECT_EQ(ak_rate_lease_want(5000), 20u);           /* 200/s */
    EXPECT_EQ(ak_rate_lease_want(100000), 1u);          /* 10/s */
    EXPECT_EQ(ak_rate_lease_want(6000000), 1u);         /* 10/m */
    EXPECT_EQ(ak_rate_lease_want(3600000000ULL), 1u);   /* 1/h */
    EXPECT_EQ(ak_rate_lease_want(1), uint32_t(AK_RATE_LEASE_MAX));
    EXPECT_EQ(ak_rate_lease_want(0), uint32_t(AK_RATE_LEASE_MAX));

    /* (burst + batch - 1) intervals, and 100 ms */
    EXPECT_EQ(ak_rate_lease_tau(5000, 0, 20), 19u * 5000 + 100000);
    EXPECT_EQ(ak_rate_lease_tau(5000, 20, 20), 39u * 5000 + 100000);
    EXPECT_EQ(ak_rate_lease_tau(5000, 4, 1), 4u * 5000 + 100000);
    EXPECT_EQ(ak_rate_lease_tau(UINT64_MAX, 5, 5), UINT64_MAX);
}

/* a grant of n at one instant is n requests of the plain GCRA then; the
 * retry is when a whole batch would conform */
TEST(ClusterRate, GrantIsGcraInBatches)
{
    std::mt19937_64 rng(7);

    for (int i = 0; i < 3000; i++) {
        const uint64_t T = 1 + rng() % 100000;
        const uint64_t want = 1 + rng() % 60;
        /* as the module asks: a depth of at least a batch */
        const uint32_t burst = static_cast<uint32_t>(want - 1 + rng() % 50);
        const uint64_t now = 1000000000 + rng() % 1000000;
        uint64_t tat = now - 500000 + rng() % 5000000;
        uint64_t ref = tat;

        uint64_t retry;
        uint64_t g = ak_gcra_grant(&tat, now, T, burst * T, want, &retry);

        uint64_t n = 0;
        ak_rate_result_t rr;
        while (n < want && ak_gcra(&ref, now, T, burst, &rr)) {
            n++;
        }
        ASSERT_EQ(g, n) << "T " << T << " burst " << burst;
        ASSERT_EQ(tat, ref);

        /* the first instant at which want more in a row would conform */
        uint64_t lo = now, hi = now + 100000000;
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            uint64_t probe = ref, k = 0;
            while (k < want && ak_gcra(&probe, mid, T, burst, &rr)) {
                k++;
            }
            if (k == want) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        ASSERT_EQ(retry, lo - now) << "T " << T << " burst " << burst
                                   << " want " << want;
        if (want == 1 && g == 0) {
            ak_rate_result_t one;
            uint64_t probe = ref;
            ASSERT_EQ(ak_gcra(&probe, now, T, burst, &one), 0);
            ASSERT_EQ(retry, one.retry_after_us);
        }
    }

    uint64_t tat = 0;
    EXPECT_EQ(ak_gcra_grant(&tat, 10, 5, 0, 0, nullptr), 0u);
    EXPECT_EQ(ak_gcra_grant(nullptr, 10, 5, 0, 3, nullptr), 0u);
}

namespace {

ak_key_state_t zero_state()
{
    ak_key_state_t st;
    std::memset(&st, 0, sizeof(st));
    return st;
}

bool same(const ak_key_state_t &a, const ak_key_state_t &b)
{
    return std::memcmp(&a, &b, sizeof(a)) == 0;
}

} // namespace

TEST(ClusterRate, AdmitOnLeasedTokens)
{
    auto r = make({ { "rate", "100/s" }, { "burst", "10" },
                    { "rate_scope", "cluster" } });
    ASSERT_EQ(r->view_rc, 0);
    const ak_record_t &rec = r->rec;
    const int64_t now = 1717236000;
    const uint64_t t0 = 50000000000ULL;      /* monotonic us */
    ak_admit_result_t res;
    const unsigned kC = AK_LIMITS_CLUSTER_RATE;

    /* no token: nothing consumed, ask Redis */
    ak_key_state_t st = zero_state(), before = st;
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0, 100, kC, &res),
              AK_NEED_RATE_LEASE);
    EXPECT_TRUE(same(st, before));

    /* without the flag (Redis unreachable): the per-node limiter */
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0, 100, 0, &res), AK_ADMIT);
    EXPECT_EQ(st.r_left, 0u);
    st = zero_state();

    /* 10 tokens: 10 admitted (the node's own GCRA allows 11 at once) */
    ak_rate_lease_apply(&st, 10, 0, t0);
    EXPECT_EQ(st.r_left, 10u);
    int prefetch = 0;
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(ak_limits_admit_ex(&st, &rec, now, t0, 100, kC, &res),
                  AK_ADMIT) << i;
        prefetch += res.rate_lease;
    }
    /* want 10 for 100/s: low from 3 left on (fewer than 10 / 4 + 1) */
    EXPECT_EQ(prefetch, 3);
    EXPECT_EQ(st.r_left, 0u);
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0, 100, kC, &res),
              AK_NEED_RATE_LEASE);

    /* Redis has no batch for 7 ms: denied here meanwhile, then ask again */
    ak_rate_lease_apply(&st, 0, 7000, t0);
    before = st;
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0 + 1000, 100, kC, &res),
              AK_DENY_RATE);
    EXPECT_TRUE(same(st, before));
    EXPECT_EQ(res.rate.retry_after_us, 6000u);
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0 + 7000, 100, kC, &res),
              AK_NEED_RATE_LEASE);

    /* a partial batch: spent, but no prefetch before Redis has a batch */
    st = zero_state();
    ak_rate_lease_apply(&st, 2, 50000, t0);
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0, 100, kC, &res),
              AK_ADMIT);
    EXPECT_EQ(res.rate_lease, 0u);
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0 + 50000, 100, kC, &res),
              AK_ADMIT);
    EXPECT_EQ(res.rate_lease, 1u);

    /* a stale "not before" (the clock wrapped past it) is ignored */
    st = zero_state();
    st.r_next_ms = static_cast<uint32_t>(t0 / 1000) - 5000;
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0, 100, kC, &res),
              AK_NEED_RATE_LEASE);
    st.r_next_ms = static_cast<uint32_t>(t0 / 1000) + 0x7fff0000u;
    EXPECT_EQ(ak_limits_admit_ex(&st, &rec, now, t0, 100, kC, &res),
              AK_NEED_RATE_LEASE);

    /* the node's GCRA still paces: 11 at once, then one per 10 ms */
    st = zero_state();
    ak_rate_lease_apply(&st, 100, 0, t0);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        ok += ak_limits_admit_ex(&st, &rec, now, t0, 100, kC, &res)
              == AK_ADMIT;
    }
    EXPECT_EQ(ok, 11);
    EXPECT_EQ(st.r_left, 89u);
}

TEST(ClusterRate, DeniedByQuotaConsumesNoToken)
{
    auto r = make({ { "rate", "100/s" }, { "rate_scope", "cluster" },
                    { "quota", "5/hour" } });
    ASSERT_EQ(r->view_rc, 0);
    const int64_t now = 1717236000;
    const uint64_t t0 = 50000000000ULL;
    ak_admit_result_t res;

    ak_key_state_t st = zero_state();
    st.q_window = static_cast<uint32_t>(now / 3600);
    st.q_used = 5;                      /* the quota is used up */
    ak_rate_lease_apply(&st, 3, 0, t0);
    ak_key_state_t before = st;

    EXPECT_EQ(ak_limits_admit_ex(&st, &r->rec, now, t0, 100,
                                 AK_LIMITS_CLUSTER_RATE, &res),
              AK_DENY_QUOTA);
    EXPECT_TRUE(same(st, before));
    EXPECT_EQ(st.r_left, 3u);
}

TEST(ClusterRate, CarryDropsTokensOnChange)
{
    auto a = make({ { "rate", "100/s" }, { "rate_scope", "cluster" } });
    auto b = make({ { "rate", "100/s" }, { "rate_scope", "node" } });
    auto c = make({ { "rate", "200/s" }, { "rate_scope", "cluster" } });
    auto o = make({ { "rate", "100/s" }, { "rate_scope", "cluster" },
                    { "owner", "x" } });

    ak_key_state_t st = zero_state();
    ak_rate_lease_apply(&st, 7, 0, 1000000);
    ak_key_state_t kept = st;

    ak_key_state_carry(&a->rec, &o->rec, &st);     /* same rate and scope */
    EXPECT_TRUE(same(st, kept));
    ak_key_state_carry(&a->rec, &b->rec, &st);     /* scope changed */
    EXPECT_EQ(st.r_left, 0u);
    st = kept;
    ak_key_state_carry(&a->rec, &c->rec, &st);     /* rate changed */
    EXPECT_EQ(st.r_left, 0u);
}

namespace {

/*
 * Nodes sharing one Redis GCRA: each node's worker asks for tokens when it
 * has none (the request waits for the answer) or runs low (in the
 * background), one lease in flight per node, answered after latency_us
 * (Redis runs the script halfway).  Requests arrive evenly at each node's
 * share of offered_per_s.  Returns the requests admitted in duration_us.
 */
struct SimNode {
    ak_key_state_t st = zero_state();
    double share;
    double next_at = 0;
    bool in_flight = false;
    uint64_t answer_at = 0, script_at = 0;
    uint64_t waiting = 0;
    uint64_t admitted = 0;
};

uint64_t simulate(const ak_record_t &rec, std::vector<double> shares,
    double offered_per_s, uint64_t duration_us, uint64_t latency_us,
    uint64_t *leases)
{
    std::vector<SimNode> nodes(shares.size());
    const uint64_t t0 = 1000000000ULL;
    const uint32_t want = ak_rate_lease_want(rec.rate_interval_us);
    const uint64_t tau = ak_rate_lease_tau(rec.rate_interval_us, rec.burst,
                                           want);
    uint64_t redis_tat = 0;
    *leases = 0;

    for (size_t i = 0; i < nodes.size(); i++) {
        nodes[i].share = shares[i];
        nodes[i].next_at = 1e6 / (offered_per_s * shares[i]) * 0.37;
    }

    auto send = [&](SimNode &n, uint64_t t) {
        if (!n.in_flight) {
            n.in_flight = true;
            n.script_at = t + latency_us / 2;
            n.answer_at = t + latency_us;
            (*leases)++;
        }
    };

    auto admit = [&](SimNode &n, uint64_t t) {
        ak_admit_result_t res;
        int rc = ak_limits_admit_ex(&n.st, &rec, 1717236000, t0 + t, 100,
                                    AK_LIMITS_CLUSTER_RATE, &res);
        if (rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH) {
            if (t < duration_us) {
                n.admitted++;
            }
            if (res.rate_lease) {
                send(n, t);
            }
            return true;
        }
        if (rc == AK_NEED_RATE_LEASE) {
            send(n, t);
            n.waiting++;
        }
        return false;
    };

    for (uint64_t t = 0; t < duration_us; t += 50) {
        for (SimNode &n : nodes) {
            if (n.in_flight && t >= n.answer_at) {
                uint64_t retry;
                uint64_t g = ak_gcra_grant(&redis_tat, t0 + n.script_at,
                                           rec.rate_interval_us, tau, want,
                                           &retry);
                ak_rate_lease_apply(&n.st, g, retry, t0 + t);
                n.in_flight = false;
                /* the waiters decide again (once: then they are denied) */
                uint64_t w = n.waiting;
                n.waiting = 0;
                while (w-- > 0) {
                    ak_admit_result_t res;
                    int rc = ak_limits_admit_ex(&n.st, &rec, 1717236000,
                                                t0 + t, 100,
                                                AK_LIMITS_CLUSTER_RATE, &res);
                    if (rc == AK_ADMIT || rc == AK_ADMIT_PREFETCH) {
                        n.admitted++;
                        if (res.rate_lease) {
                            send(n, t);
                        }
                    }
                }
            }
            while (n.next_at <= t) {
                n.next_at += 1e6 / (offered_per_s * n.share);
                admit(n, t);
            }
        }
    }

    uint64_t total = 0;
    for (SimNode &n : nodes) {
        total += n.admitted;
    }
    return total;
}

} // namespace

/* the goal: 2 nodes, 80/20, within 10% of the rate over 30 s */
TEST(ClusterRate, TwoNodesUnevenLoadWithinTenPercent)
{
    struct Case {
        const char *rate, *burst;
        double offered;
        uint64_t seconds;
    } cases[] = {
        { "200/s", "20", 600, 30 },
        { "200/s", "20", 600, 10 },
        { "1000/s", "0", 3000, 10 },
        { "50/s", "", 150, 30 },
        { "5/s", "0", 50, 30 },
        { "600/m", "10", 30, 30 },
        { "30/m", "0", 5, 60 },
    };

    for (const Case &c : cases) {
        auto r = c.burst[0]
                 ? make({ { "rate", c.rate }, { "burst", c.burst },
                          { "rate_scope", "cluster" } })
                 : make({ { "rate", c.rate }, { "rate_scope", "cluster" } });
        ASSERT_EQ(r->view_rc, 0);
        const double per_s = 1e6 / static_cast<double>(r->rec.rate_interval_us);
        const double expect = per_s * static_cast<double>(c.seconds);

        for (uint64_t latency : { 200u, 2000u }) {
            uint64_t leases;
            uint64_t got = simulate(r->rec, { 0.8, 0.2 }, c.offered,
                                    c.seconds * 1000000, latency, &leases);
            double err = (static_cast<double>(got) - expect) / expect;
            std::printf("[ info ] rate %s burst %s, 2 nodes 80/20 offered "
                        "%.0f/s, %llu s, lease latency %llu us: admitted "
                        "%llu (%.1f/s, %+.2f%%), %llu leases\n",
                        c.rate, c.burst[0] ? c.burst : "default", c.offered,
                        (unsigned long long) c.seconds,
                        (unsigned long long) latency,
                        (unsigned long long) got,
                        static_cast<double>(got)
                            / static_cast<double>(c.seconds),
                        err * 100, (unsigned long long) leases);
            EXPECT_LE(std::abs(err), 0.10) << c.rate << " " << c.seconds;
            /* no Redis round trip per request: at high rates one per
             * batch or so; at low ones (a batch of 1) about one per
             * token and node */
            if (ak_rate_lease_want(r->rec.rate_interval_us) >= 10) {
                EXPECT_LT(leases, got / 5) << c.rate;
            } else {
                EXPECT_LE(leases, 2 * got + 10) << c.rate;
            }
        }
    }
}

/* under the rate, everything offered is admitted */
TEST(ClusterRate, UnderTheRateAllAdmitted)
{
    auto r = make({ { "rate", "100/s" }, { "rate_scope", "cluster" } });
    ASSERT_EQ(r->view_rc, 0);
    uint64_t leases;
    uint64_t got = simulate(r->rec, { 0.8, 0.2 }, 50, 10000000, 1000,
                            &leases);
    EXPECT_GE(got, 495u);
    EXPECT_LE(got, 501u);
}
