/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl on a Redis Cluster (redis-cluster://, rediss-cluster://): the
 * slot map from CLUSTER SLOTS, each command sent to the master of its key's
 * slot, MOVED (map read again) and ASK (ASKING first) followed.
 *
 * Commands with several keys are split by slot: MGET into GETs, DEL and
 * EXISTS per key (the counts added), WATCH per slot on the node of the
 * slot.  A MULTI ... EXEC whose commands are all in one slot runs as it is;
 * one whose commands span slots runs as one MULTI/EXEC per slot, in the
 * order of their first command (PUBLISH, keyless, goes with the last one):
 * each part is atomic and checked by its own WATCH, the whole is not.  When
 * the first part is refused (a watched key changed) EXEC answers nil as on
 * one server; when a later one is, the change is left half made and an
 * error says so.
 */

#ifndef APIKEYCTL_CLUSTER_HPP
#define APIKEYCTL_CLUSTER_HPP

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "redis.hpp"
#include "slot.hpp"
#include "url.hpp"

namespace apikeyctl {

class ClusterClient : public Client {
public:
    /* Reads the slot map from the first seed node of the URL that answers;
     * throws Error(kExitRedis) when none does. */
    ClusterClient(const RedisUrl &url, const std::string &password,
                  double timeout_s, const TlsOptions &tls);
    ~ClusterClient() override;

    Reply cmd_raw(const Argv &argv) override;
    void append(const Argv &argv) override;
    Reply next() override;

    size_t scan_nodes() override;
    bool is_cluster() const override { return true; }
    Reply cmd_on(size_t i, const Argv &argv) override;

private:
    struct Range {
        unsigned     start, end;
        std::string  host;
        int          port;
    };
    struct Node {
        std::string  host;
        int          port;
    };

    void refresh();
    bool refresh_from(const std::string &host, int port, std::string *why);
    Node node_for(unsigned slot) const;
    Redis &conn(const Node &n);
    void drop(const Node &n);

    /* one command to the node of `slot` (or any master: slot < 0), MOVED
     * and ASK followed, a lost connection or CLUSTERDOWN/TRYAGAIN retried
     * until the timeout */
    Reply send(const Argv &argv, long slot);
    Reply route(const Argv &argv);
    void transaction(const std::vector<Argv> &ops);
    Reply unwatch();

    RedisUrl url_;
    std::string password_;
    double timeout_s_;
    TlsOptions tls_;

    std::vector<Range> map_;
    std::vector<Node> seeds_;
    std::vector<Node> scan_;            /* masters for scan_nodes/cmd_on */
    std::map<std::string, std::unique_ptr<Redis>> conns_;  /* host:port */
    std::vector<std::string> watching_; /* host:port with a WATCH */
    std::deque<Argv> queued_;
    std::deque<Reply> ready_;           /* replies of a transaction */
};


/* A RESP text as a reply (for replies made by ClusterClient); and the
 * reverse. */
Reply reply_from_resp(const std::string &resp);
void reply_to_resp(const redisReply *r, std::string *out);

} // namespace apikeyctl

#endif
