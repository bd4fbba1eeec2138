/* SPDX-License-Identifier: BSD-2-Clause */
/* The node-wide event log: each event applied once, in publication order. */

#include "ak_core.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

struct Log {
    std::unique_ptr<ak_evlog_t>  p{new ak_evlog_t};

    Log() { ak_evlog_init(p.get()); }
    ak_evlog_t *operator->() { return p.get(); }
    ak_evlog_t *get() { return p.get(); }
};


uint64_t
fp_of(int event, unsigned char b)
{
    unsigned char  h[AK_HASH_LEN];

    for (auto &c : h) {
        c = b;
    }

    return ak_evlog_fingerprint(event, h);
}

} /* namespace */


TEST(EventLog, FingerprintsTellEventsApart)
{
    unsigned char  a[AK_HASH_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    unsigned char  b[AK_HASH_LEN] = {1, 2, 3, 4, 5, 6, 7, 9};
    unsigned char  c[AK_HASH_LEN] = {1, 2, 3, 4, 5, 6, 8, 8};

    EXPECT_NE(ak_evlog_fingerprint(AK_EVENT_REVOKE, a),
              ak_evlog_fingerprint(AK_EVENT_UPDATE, a));
    EXPECT_NE(ak_evlog_fingerprint(AK_EVENT_REVOKE, a),
              ak_evlog_fingerprint(AK_EVENT_REVOKE, c));
    /* only the first 7 bytes count */
    EXPECT_EQ(ak_evlog_fingerprint(AK_EVENT_REVOKE, a),
              ak_evlog_fingerprint(AK_EVENT_REVOKE, b));
    /* flush has no hash; nothing is 0 (an unused entry) */
    EXPECT_EQ(ak_evlog_fingerprint(AK_EVENT_FLUSH, a),
              ak_evlog_fingerprint(AK_EVENT_FLUSH, nullptr));
    EXPECT_NE(ak_evlog_fingerprint(AK_EVENT_FLUSH, nullptr), 0u);
    EXPECT_NE(ak_evlog_fingerprint(AK_EVENT_UPDATE, nullptr), 0u);
}


/* Two workers receive the same stream; each event is applied once. */
TEST(EventLog, EveryEventAppliedOnceByTheFirstReader)
{
    Log       log;
    uint64_t  w1 = ak_evlog_head(log.get()), w2 = w1;

    uint64_t  u = fp_of(AK_EVENT_UPDATE, 7), r = fp_of(AK_EVENT_REVOKE, 7);

    EXPECT_EQ(ak_evlog_claim(log.get(), &w1, u), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &w2, u), AK_EVLOG_SEEN);
    EXPECT_EQ(ak_evlog_claim(log.get(), &w2, r), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &w1, r), AK_EVLOG_SEEN);
    EXPECT_EQ(ak_evlog_head(log.get()), 2u);
    EXPECT_EQ(w1, 2u);
    EXPECT_EQ(w2, 2u);
}


/* The bug this exists for: the lagging worker's old update is not applied. */
TEST(EventLog, ALaggingWorkerDoesNotReapplyOlderEvents)
{
    Log       log;
    uint64_t  fast = 0, slow = 0;
    uint64_t  u = fp_of(AK_EVENT_UPDATE, 1), r = fp_of(AK_EVENT_REVOKE, 1);

    EXPECT_EQ(ak_evlog_claim(log.get(), &fast, u), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &fast, r), AK_EVLOG_APPLY);

    EXPECT_EQ(ak_evlog_claim(log.get(), &slow, u), AK_EVLOG_SEEN);
    EXPECT_EQ(ak_evlog_claim(log.get(), &slow, r), AK_EVLOG_SEEN);

    /* caught up: the next new event is applied by whoever reads it first */
    EXPECT_EQ(ak_evlog_claim(log.get(), &slow, u), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &fast, u), AK_EVLOG_SEEN);
}


/* The same event twice in a row is two events, each applied once. */
TEST(EventLog, RepeatedEventsAreCountedNotMerged)
{
    Log       log;
    uint64_t  a = 0, b = 0;
    uint64_t  u = fp_of(AK_EVENT_UPDATE, 3);

    EXPECT_EQ(ak_evlog_claim(log.get(), &a, u), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &a, u), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &b, u), AK_EVLOG_SEEN);
    EXPECT_EQ(ak_evlog_claim(log.get(), &b, u), AK_EVLOG_SEEN);
    EXPECT_EQ(ak_evlog_claim(log.get(), &b, u), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_head(log.get()), 3u);
}


/*
 * A worker that subscribed later never receives events logged just before
 * its position was taken; the events it does receive are found further on.
 */
TEST(EventLog, EventsAWorkerNeverReceivedAreSkippedOver)
{
    Log       log;
    uint64_t  early = 0, late = 0;
    uint64_t  e1 = fp_of(AK_EVENT_UPDATE, 1), e2 = fp_of(AK_EVENT_UPDATE, 2);
    uint64_t  e3 = fp_of(AK_EVENT_REVOKE, 3);

    EXPECT_EQ(ak_evlog_claim(log.get(), &early, e1), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &early, e2), AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &early, e3), AK_EVLOG_APPLY);

    /* "late" received only e3 */
    EXPECT_EQ(ak_evlog_claim(log.get(), &late, e3), AK_EVLOG_SEEN);
    EXPECT_EQ(late, 3u);

    /* a new event not in the log: applied, appended */
    uint64_t  e4 = fp_of(AK_EVENT_FLUSH, 0);
    late = 1;
    EXPECT_EQ(ak_evlog_claim(log.get(), &late, e4), AK_EVLOG_APPLY);
    EXPECT_EQ(late, 4u);
    EXPECT_EQ(ak_evlog_claim(log.get(), &early, e4), AK_EVLOG_SEEN);
}


/* The search past the position is bounded by AK_EVLOG_SCAN. */
TEST(EventLog, TheScanIsBounded)
{
    Log       log;
    uint64_t  w = 0, behind = 0;
    uint64_t  target = fp_of(AK_EVENT_REVOKE, 9);

    for (int i = 0; i < AK_EVLOG_SCAN; i++) {
        ak_evlog_claim(log.get(), &w, fp_of(AK_EVENT_UPDATE, (unsigned char) i));
    }

    ak_evlog_claim(log.get(), &w, target);   /* entry SCAN + 1 */

    uint64_t  p = behind;
    EXPECT_EQ(ak_evlog_claim(log.get(), &p, target), AK_EVLOG_APPLY)
        << "entry " << AK_EVLOG_SCAN + 1 << " is beyond the scan";
    p = 1;
    EXPECT_EQ(ak_evlog_claim(log.get(), &p, target), AK_EVLOG_SEEN);
    EXPECT_EQ(p, (uint64_t) AK_EVLOG_SCAN + 1);
}


/*
 * A worker further behind than the ring skips the events it reads (the
 * others applied them), one position each, until it is back in the ring;
 * then it matches as usual, and applies what is new.
 */
TEST(EventLog, AWorkerBeyondTheRingSkipsUntilItIsBackInIt)
{
    Log       log;
    uint64_t  fast = 0, slow = 0;
    std::vector<uint64_t>  stream;
    const int  n = AK_EVLOG_SIZE + 5;

    for (int i = 0; i < n; i++) {
        stream.push_back(fp_of(AK_EVENT_UPDATE, (unsigned char) (i * 7)));
        EXPECT_EQ(ak_evlog_claim(log.get(), &fast, stream.back()),
                  AK_EVLOG_APPLY);
    }

    for (int i = 0; i < 5; i++) {
        EXPECT_EQ(ak_evlog_claim(log.get(), &slow, stream[i]), AK_EVLOG_LOST)
            << "event " << i;
        EXPECT_EQ(slow, (uint64_t) i + 1);
    }

    for (int i = 5; i < n; i++) {
        ASSERT_EQ(ak_evlog_claim(log.get(), &slow, stream[i]), AK_EVLOG_SEEN)
            << "event " << i;
    }

    EXPECT_EQ(slow, ak_evlog_head(log.get()));
    EXPECT_EQ(ak_evlog_claim(log.get(), &slow, fp_of(AK_EVENT_FLUSH, 0)),
              AK_EVLOG_APPLY);
    EXPECT_EQ(ak_evlog_claim(log.get(), &fast, fp_of(AK_EVENT_FLUSH, 0)),
              AK_EVLOG_SEEN);

    /* the ring keeps the last SIZE entries: SIZE behind still finds its
       next one, SIZE + 1 behind does not */
    Log       l2;
    uint64_t  a = 0, b;

    for (int i = 1; i <= AK_EVLOG_SIZE + 1; i++) {
        ak_evlog_claim(l2.get(), &a, fp_of(AK_EVENT_UPDATE, (unsigned char) i));
    }

    b = 1;
    EXPECT_EQ(ak_evlog_claim(l2.get(), &b, fp_of(AK_EVENT_UPDATE, 2)),
              AK_EVLOG_SEEN);
    EXPECT_EQ(b, 2u);
    b = 0;
    EXPECT_EQ(ak_evlog_claim(l2.get(), &b, fp_of(AK_EVENT_UPDATE, 1)),
              AK_EVLOG_LOST);
}


TEST(EventLog, APositionAheadOfTheLogStartsAgain)
{
    Log       log;
    uint64_t  w = 42;   /* the log was re-created (a new zone) */

    EXPECT_EQ(ak_evlog_claim(log.get(), &w, fp_of(AK_EVENT_UPDATE, 1)),
              AK_EVLOG_APPLY);
    EXPECT_EQ(w, 1u);
    EXPECT_EQ(ak_evlog_claim(nullptr, &w, 1), AK_EVLOG_APPLY);
}

// The events channel's messages (ak_event_parse, lifted from events.c).
TEST(EventMessage, Parse)
{
    const std::string hex(64, 'a'), HEX(64, 'F');
    unsigned char h[AK_HASH_LEN];

    auto parse = [&](const std::string &m) {
        memset(h, 0x55, sizeof(h));
        return ak_event_parse(m.data(), m.size(), h);
    };

    EXPECT_EQ(AK_EVENT_FLUSH, parse("flush"));
    EXPECT_EQ(AK_EVENT_REVOKE, parse("revoke " + hex));
    EXPECT_EQ(0xaa, h[0]);
    EXPECT_EQ(0xaa, h[31]);
    EXPECT_EQ(AK_EVENT_UPDATE, parse("update " + HEX));
    EXPECT_EQ(0xff, h[0]);

    const std::string bad[] = {
        "", "flush ", "flush x", "FLUSH", " flush", "revoke", "revoke ",
        "revoke " + hex + " ", "revoke  " + hex, "revoke " + hex + "a",
        "revoke " + hex.substr(1), "Revoke " + hex, "update\t" + hex,
        "revoke " + std::string(63, 'a') + "g", "delete " + hex,
        std::string("flush\0", 6), "revoke" + hex,
    };
    for (const auto &m : bad) {
        EXPECT_EQ(0, parse(m)) << "accepted \"" << m << "\"";
    }
    EXPECT_EQ(0, ak_event_parse(nullptr, 0, h));
    EXPECT_EQ(0, ak_event_parse("flush", 5, nullptr));
}
