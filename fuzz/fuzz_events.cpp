/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_events: the events channel.  Any message through ak_event_parse
 * against a reference reading of "revoke HASH" / "update HASH" / "flush";
 * then a sequence of workers receiving events through the node-wide log
 * (ak_evlog_claim): every event published is applied once per node, in
 * publication order, by whichever worker reads it first, as long as no
 * worker falls further behind than the log holds.
 */

#include "ak_core.h"
#include "fuzz_util.h"

#include <memory>
#include <string>
#include <vector>

namespace {

int ref_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ref_parse(const std::string &m, unsigned char *hash)
{
    if (m == "flush") return AK_EVENT_FLUSH;
    int ev = m.rfind("revoke ", 0) == 0 ? AK_EVENT_REVOKE
             : m.rfind("update ", 0) == 0 ? AK_EVENT_UPDATE : 0;
    if (!ev || m.size() != 7 + 64) return 0;
    for (size_t i = 0; i < 32; i++) {
        int hi = ref_hex(m[7 + 2 * i]), lo = ref_hex(m[8 + 2 * i]);
        if (hi < 0 || lo < 0) return 0;
        hash[i] = static_cast<unsigned char>(hi * 16 + lo);
    }
    return ev;
}

} // namespace


extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz::Input in(data, size);

    if (in.u8() & 1) {
        std::string m = in.rest();
        fuzz::Exact e(m);
        unsigned char h[AK_HASH_LEN], want[AK_HASH_LEN];
        int rc = ak_event_parse(e.c(), e.len, h);
        int ref = ref_parse(m, want);
        FUZZ_CHECK(rc == ref);
        if (rc == AK_EVENT_REVOKE || rc == AK_EVENT_UPDATE) {
            FUZZ_CHECK(std::memcmp(h, want, AK_HASH_LEN) == 0);
        }
        return 0;
    }

    /* workers reading the published events at their own pace */
    std::unique_ptr<ak_evlog_t> log(new ak_evlog_t);
    ak_evlog_init(log.get());

    size_t nworkers = 2 + in.u8() % 3;
    std::vector<uint64_t> pos(nworkers, 0);   /* log positions */
    std::vector<size_t> next(nworkers, 0);    /* next event to read */
    std::vector<uint64_t> published;          /* fingerprints */
    std::vector<int> applied;                 /* times each was applied */
    std::vector<size_t> order;                /* applied, in order */

    int steps = 0;
    while (!in.empty() && steps++ < 2000) {
        uint8_t op = in.u8();
        if (op & 1) {
            unsigned char h[AK_HASH_LEN] = {};
            h[0] = static_cast<unsigned char>(published.size());
            h[1] = static_cast<unsigned char>(published.size() >> 8);
            h[2] = in.u8() & 3;             /* a few hashes in common */
            int ev = 1 + (op >> 1) % 3;
            published.push_back(ak_evlog_fingerprint(ev, h));
            applied.push_back(0);
            continue;
        }
        size_t w = (op >> 1) % nworkers;
        if (next[w] >= published.size()) {
            continue;
        }
        size_t e = next[w]++;
        int rc = ak_evlog_claim(log.get(), &pos[w], published[e]);
        FUZZ_CHECK(rc == AK_EVLOG_SEEN || rc == AK_EVLOG_APPLY
                   || rc == AK_EVLOG_LOST);
        if (rc == AK_EVLOG_APPLY) {
            applied[e]++;
            order.push_back(e);
        }

        /* within the log's reach every event is applied exactly once */
        if (published.size() < AK_EVLOG_SCAN) {
            FUZZ_CHECK(applied[e] == 1);
        }
    }

    /* in publication order, as long as nothing was lost */
    if (published.size() < AK_EVLOG_SCAN) {
        for (size_t i = 1; i < order.size(); i++) {
            FUZZ_CHECK(order[i] > order[i - 1]);
        }
    }

    return 0;
}
