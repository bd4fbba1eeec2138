/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * events.cpp: the node-wide event log that makes every event apply once per
 * node, in publication order (see "Node-wide event log" in ak_core.h).
 */

#include "ak_core.h"

#include <cstring>

extern "C" {

void
ak_evlog_init(ak_evlog_t *log) noexcept
{
    if (log) {
        memset(log, 0, sizeof(*log));
    }
}


int
ak_event_parse(const char *msg, size_t len, unsigned char hash[AK_HASH_LEN])
    noexcept
{
    const char  *sp;
    size_t       word;
    int          event;

    if (msg == NULL || hash == NULL) {
        return 0;
    }

    /* the first word names the event */

    sp = static_cast<const char *>(memchr(msg, ' ', len));
    word = sp ? (size_t) (sp - msg) : len;

    if (word == 5 && memcmp(msg, "flush", 5) == 0) {
        return sp ? 0 : AK_EVENT_FLUSH;
    }

    if (word == 6 && memcmp(msg, "revoke", 6) == 0) {
        event = AK_EVENT_REVOKE;

    } else if (word == 6 && memcmp(msg, "update", 6) == 0) {
        event = AK_EVENT_UPDATE;

    } else {
        return 0;
    }

    if (sp == NULL
        || ak_hex_decode_hash(sp + 1, len - word - 1, hash) != 0)
    {
        return 0;
    }

    return event;
}


uint64_t
ak_evlog_head(const ak_evlog_t *log) noexcept
{
    return log ? log->head : 0;
}


/*
 * The event type in the low byte, 56 bits of the hash above it: two
 * different events within the few entries a claim looks at collide with a
 * probability of about 2^-50.  Never 0, so an unused entry matches nothing.
 */

uint64_t
ak_evlog_fingerprint(int event, const unsigned char *hash) noexcept
{
    uint64_t  fp;
    int       i;

    fp = 0;

    if (hash && event != AK_EVENT_FLUSH) {
        for (i = 0; i < 7; i++) {
            fp = (fp << 8) | hash[i];
        }
    }

    return (fp << 8) | (uint8_t) event;
}


int
ak_evlog_claim(ak_evlog_t *log, uint64_t *pos, uint64_t fp) noexcept
{
    uint64_t  p, last;

    if (log == NULL || pos == NULL) {
        return AK_EVLOG_APPLY;
    }

    if (*pos > log->head) {
        /* the log was reset under this worker: start over */
        *pos = log->head;
    }

    if (log->head - *pos > AK_EVLOG_SIZE) {
        /*
         * The entry after the position is overwritten (the ring keeps
         * entries head - SIZE + 1 .. head): this is that event, which the
         * faster workers applied long ago.  Skip it, one position at a
         * time, until the position is back inside the ring.
         */
        (*pos)++;
        return AK_EVLOG_LOST;
    }

    if (*pos < log->head) {
        /*
         * Usually the next entry: a faster worker applied this event.  An
         * entry a little further on means events this worker never
         * received (it subscribed after they were published).
         */

        last = log->head;

        if (last - *pos > AK_EVLOG_SCAN) {
            last = *pos + AK_EVLOG_SCAN;
        }

        for (p = *pos + 1; p <= last; p++) {
            if (log->fp[p % AK_EVLOG_SIZE] == fp) {
                *pos = p;
                return AK_EVLOG_SEEN;
            }
        }
    }

    log->head++;
    log->fp[log->head % AK_EVLOG_SIZE] = fp;
    *pos = log->head;

    return AK_EVLOG_APPLY;
}

} /* extern "C" */
