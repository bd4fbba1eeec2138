/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl on a Redis Cluster: see cluster.hpp.
 */

#include "cluster.hpp"

#include "util.hpp"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <optional>
#include <set>

namespace apikeyctl {

/* ------------------------------------------------------------------ */
/* replies made here                                                   */

Reply reply_from_resp(const std::string &resp)
{
    std::unique_ptr<redisReader, ReaderFree> rd(redisReaderCreate());
    void *r = nullptr;

    if (!rd || redisReaderFeed(rd.get(), resp.data(), resp.size()) != REDIS_OK
        || redisReaderGetReply(rd.get(), &r) != REDIS_OK || r == nullptr)
    {
        fail(kExitInternal, "internal error: cannot make a reply");
    }

    return Reply(static_cast<redisReply *>(r));
}


void reply_to_resp(const redisReply *r, std::string *out)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
        *out += "$" + std::to_string(r->len) + "\r\n";
        out->append(r->str, r->len);
        *out += "\r\n";
        break;
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        *out += r->type == REDIS_REPLY_STATUS ? "+" : "-";
        for (size_t i = 0; i < r->len; i++) {
            char c = r->str[i];
            *out += (c == '\r' || c == '\n') ? ' ' : c;
        }
        *out += "\r\n";
        break;
    case REDIS_REPLY_INTEGER:
        *out += ":" + std::to_string(r->integer) + "\r\n";
        break;
    case REDIS_REPLY_ARRAY:
        *out += "*" + std::to_string(r->elements) + "\r\n";
        for (size_t i = 0; i < r->elements; i++) {
            reply_to_resp(r->element[i], out);
        }
        break;
    default:
        *out += "$-1\r\n";
        break;
    }
}


static std::string upper(const std::string &s)
{
    std::string u(s);
    for (char &c : u) {
        if (c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    return u;
}


static bool starts_with(const std::string &s, const char *p)
{
    return s.compare(0, std::strlen(p), p) == 0;
}


static void nap(double s)
{
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(s);
    ts.tv_nsec = static_cast<long>((s - static_cast<double>(ts.tv_sec)) * 1e9);
    nanosleep(&ts, nullptr);
}


/* ------------------------------------------------------------------ */
/* the client                                                          */

ClusterClient::ClusterClient(const RedisUrl &url, const std::string &password,
                             double timeout_s, const TlsOptions &tls)
    : url_(url), password_(password), timeout_s_(timeout_s), tls_(tls)
{
    for (const HostPort &hp : url.nodes) {
        seeds_.push_back({hp.host, hp.port});
    }
    refresh();
}


ClusterClient::~ClusterClient()
{
    wipe(password_);
    wipe(url_.password);
}


static std::string node_name(const std::string &host, int port)
{
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host)
           + ":" + std::to_string(port);
}


Redis &ClusterClient::conn(const Node &n)
{
    std::string name = node_name(n.host, n.port);
    auto it = conns_.find(name);
    if (it != conns_.end()) {
        return *it->second;
    }

    std::unique_ptr<Redis> r(new Redis(url_.node(n.host, n.port), password_,
                                       timeout_s_, tls_));
    Redis &ref = *r;
    conns_[name] = std::move(r);
    return ref;
}


void ClusterClient::drop(const Node &n)
{
    std::string name = node_name(n.host, n.port);
    conns_.erase(name);
    watching_.erase(std::remove(watching_.begin(), watching_.end(), name),
                    watching_.end());
}


bool ClusterClient::refresh_from(const std::string &host, int port,
                                 std::string *why)
{
    Node n{host, port};
    Reply r;

    try {
        r = conn(n).cmd_raw({"CLUSTER", "SLOTS"});
    } catch (const Error &e) {
        if (e.code() != kExitRedis) {
            throw;
        }
        drop(n);
        *why = e.what();
        return false;
    }

    if (reply_is_error(r.get())) {
        *why = "redis at " + node_name(host, port) + ": CLUSTER SLOTS: "
               + printable(reply_string(r.get()))
               + (starts_with(reply_string(r.get()),
                              "ERR This instance has cluster support disabled")
                      ? " (a redis-cluster:// URL needs a Redis Cluster)"
                      : "");
        return false;
    }

    std::vector<Range> m;
    unsigned covered = 0;

    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3
            || e->element[0]->type != REDIS_REPLY_INTEGER
            || e->element[1]->type != REDIS_REPLY_INTEGER
            || e->element[2]->type != REDIS_REPLY_ARRAY
            || e->element[2]->elements < 2
            || e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }
        Range rg;
        rg.start = static_cast<unsigned>(e->element[0]->integer);
        rg.end = static_cast<unsigned>(e->element[1]->integer);
        rg.host = reply_string(e->element[2]->element[0]);
        rg.port = static_cast<int>(e->element[2]->element[1]->integer);
        if (rg.host.empty() || rg.host == "?") {
            rg.host = host;     /* "unknown endpoint": the node we asked */
        }
        if (rg.start > rg.end || rg.end > 16383) {
            continue;
        }
        covered += rg.end - rg.start + 1;
        m.push_back(rg);
    }

    if (m.empty()) {
        *why = "redis at " + node_name(host, port) + " serves no slot "
               "(CLUSTER SLOTS is empty)";
        return false;
    }

    std::sort(m.begin(), m.end(),
              [](const Range &a, const Range &b) {
                  return a.start < b.start;
              });
    map_ = std::move(m);
    (void) covered;     /* uncovered slots answer CLUSTERDOWN */
    return true;
}


void ClusterClient::refresh()
{
    std::string why;

    /* the masters known, then the seeds of the URL */
    std::vector<Node> tries;
    std::set<std::string> seen;
    for (const Range &r : map_) {
        if (seen.insert(node_name(r.host, r.port)).second) {
            tries.push_back({r.host, r.port});
        }
    }
    for (const Node &n : seeds_) {
        if (seen.insert(node_name(n.host, n.port)).second) {
            tries.push_back(n);
        }
    }

    for (const Node &n : tries) {
        if (refresh_from(n.host, n.port, &why)) {
            return;
        }
    }

    fail(kExitRedis, "no node of the cluster answered CLUSTER SLOTS: "
                     + why);
}


ClusterClient::Node ClusterClient::node_for(unsigned slot) const
{
    for (const Range &r : map_) {
        if (slot >= r.start && slot <= r.end) {
            return {r.host, r.port};
        }
    }
    /* an uncovered slot: any master answers CLUSTERDOWN */
    return {map_.front().host, map_.front().port};
}


/* "MOVED 3999 127.0.0.1:6381" or "ASK ...": the node */
static bool redirect_target(const std::string &msg, const std::string &host,
                            std::string *h, int *p)
{
    size_t sp1 = msg.find(' ');
    size_t sp2 = sp1 == std::string::npos ? sp1 : msg.find(' ', sp1 + 1);
    if (sp2 == std::string::npos) {
        return false;
    }
    std::string addr = msg.substr(sp2 + 1);
    size_t colon = addr.rfind(':');
    uint64_t port;
    if (colon == std::string::npos
        || !parse_uint(addr.substr(colon + 1), 65535, &port) || port == 0)
    {
        return false;
    }
    *h = addr.substr(0, colon);
    if (h->size() > 2 && h->front() == '[' && h->back() == ']') {
        *h = h->substr(1, h->size() - 2);
    }
    if (h->empty()) {
        *h = host;
    }
    *p = static_cast<int>(port);
    return true;
}


Reply ClusterClient::send(const Argv &argv, long slot)
{
    const double deadline = mono_now() + timeout_s_;
    std::optional<Node> to;     /* where a redirection points */
    bool ask = false;           /* ... with ASKING first */

    for (int hops = 0;; hops++) {
        Node n = to ? *to
                    : slot < 0 ? Node{map_.front().host, map_.front().port}
                               : node_for(static_cast<unsigned>(slot));
        bool asking = to && ask;
        to.reset();
        ask = false;
        Reply r;

        try {
            Redis &c = conn(n);
            if (asking) {
                c.append({"ASKING"});
                c.append(argv);
                Reply a = c.next();
                r = c.next();
            } else {
                r = c.cmd_raw(argv);
            }
        } catch (const Error &e) {
            if (e.code() != kExitRedis || mono_now() >= deadline) {
                throw;
            }
            /* a master gone: its replica takes over; read the map again */
            drop(n);
            nap(0.1);
            try {
                refresh();
            } catch (const Error &) {
                /* none answers yet: again until the deadline */
            }
            continue;
        }

        if (!reply_is_error(r.get()) || hops >= 16) {
            return r;
        }

        std::string msg = reply_string(r.get());
        std::string h;
        int p;

        if (starts_with(msg, "MOVED ")
            && redirect_target(msg, n.host, &h, &p))
        {
            try {
                refresh();
            } catch (const Error &) {
            }
            if (slot >= 0) {
                Node t = node_for(static_cast<unsigned>(slot));
                if (t.host != h || t.port != p) {
                    to = Node{h, p};    /* the map lags: go there anyway */
                }
            }
            continue;
        }

        if (starts_with(msg, "ASK ")
            && redirect_target(msg, n.host, &h, &p))
        {
            to = Node{h, p};
            ask = true;
            continue;
        }

        if ((starts_with(msg, "TRYAGAIN") || starts_with(msg, "CLUSTERDOWN"))
            && mono_now() < deadline)
        {
            nap(0.1);
            try {
                refresh();
            } catch (const Error &) {
            }
            continue;
        }

        return r;
    }
}


/* the keys of a command (those the subcommands use), -1: none */
static std::vector<size_t> key_positions(const std::string &name,
                                         size_t argc)
{
    std::vector<size_t> k;

    if (name == "MGET" || name == "DEL" || name == "EXISTS"
        || name == "WATCH" || name == "UNLINK")
    {
        for (size_t i = 1; i < argc; i++) {
            k.push_back(i);
        }
    } else if (name == "PUBLISH" || name == "SCAN" || name == "PING"
               || name == "MULTI" || name == "EXEC" || name == "UNWATCH"
               || name == "DISCARD" || name == "INFO" || name == "ROLE")
    {
        /* keyless */
    } else if (argc > 1) {
        k.push_back(1);
    }

    return k;
}


Reply ClusterClient::unwatch()
{
    for (const std::string &name : watching_) {
        auto it = conns_.find(name);
        if (it != conns_.end()) {
            it->second->cmd_raw({"UNWATCH"});
        }
    }
    watching_.clear();
    return reply_from_resp("+OK\r\n");
}


Reply ClusterClient::route(const Argv &argv)
{
    if (argv.empty()) {
        fail(kExitInternal, "internal error: an empty command");
    }

    const std::string name = upper(argv[0]);

    if (name == "UNWATCH") {
        return unwatch();
    }

    std::vector<size_t> keys = key_positions(name, argv.size());

    if (keys.empty()) {
        return send(argv, -1);
    }

    std::set<unsigned> slots;
    for (size_t i : keys) {
        slots.insert(key_slot(argv[i]));
    }

    if (slots.size() == 1 && name != "WATCH") {
        return send(argv, static_cast<long>(*slots.begin()));
    }

    if (name == "WATCH") {
        /* one WATCH per slot, on the connection to the slot's master */
        for (unsigned sl : slots) {
            Argv w{"WATCH"};
            for (size_t i : keys) {
                if (key_slot(argv[i]) == sl) {
                    w.push_back(argv[i]);
                }
            }
            Reply r = send(w, static_cast<long>(sl));
            if (reply_is_error(r.get())) {
                return r;
            }
            Node n = node_for(sl);
            std::string nn = node_name(n.host, n.port);
            if (std::find(watching_.begin(), watching_.end(), nn)
                == watching_.end())
            {
                watching_.push_back(nn);
            }
        }
        return reply_from_resp("+OK\r\n");
    }

    if (name == "MGET") {
        std::string out = "*" + std::to_string(keys.size()) + "\r\n";
        for (size_t i : keys) {
            Reply r = send({"GET", argv[i]},
                           static_cast<long>(key_slot(argv[i])));
            if (reply_is_error(r.get())) {
                return r;
            }
            reply_to_resp(r.get(), &out);
        }
        return reply_from_resp(out);
    }

    /* DEL, EXISTS, UNLINK: one per key, the counts added */
    long long sum = 0;
    for (size_t i : keys) {
        Reply r = send({argv[0], argv[i]},
                       static_cast<long>(key_slot(argv[i])));
        if (reply_is_error(r.get())) {
            return r;
        }
        sum += r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    }
    return reply_from_resp(":" + std::to_string(sum) + "\r\n");
}


/*
 * MULTI ops EXEC: one MULTI/EXEC per slot, in the order of their first
 * command; keyless commands (PUBLISH) go with the last part.  The replies
 * are made as one server gives them: +OK, +QUEUED (or a queueing error) per
 * command, then EXEC's array in the order of the commands (nil when the
 * first part was refused).
 */
void ClusterClient::transaction(const std::vector<Argv> &ops)
{
    std::vector<long> slot_of(ops.size(), -1);
    std::vector<long> order;

    for (size_t i = 0; i < ops.size(); i++) {
        std::vector<size_t> k = key_positions(upper(ops[i][0]), ops[i].size());
        if (k.empty()) {
            continue;
        }
        unsigned sl = key_slot(ops[i][k[0]]);
        for (size_t j : k) {
            if (key_slot(ops[i][j]) != sl) {
                fail(kExitInternal, "internal error: " + ops[i][0]
                     + " with keys in different cluster slots");
            }
        }
        slot_of[i] = static_cast<long>(sl);
        if (std::find(order.begin(), order.end(), slot_of[i]) == order.end()) {
            order.push_back(slot_of[i]);
        }
    }

    if (order.empty()) {
        order.push_back(-1);
    }
    for (long &s : slot_of) {
        if (s < 0) {
            s = order.back();
        }
    }

    std::vector<std::string> results(ops.size());
    std::vector<std::string> queue_replies(ops.size(), "+QUEUED\r\n");
    bool refused = false;
    std::set<std::string> used;

    for (size_t part = 0; part < order.size(); part++) {
        long sl = order[part];
        Node n = sl < 0 ? Node{map_.front().host, map_.front().port}
                        : node_for(static_cast<unsigned>(sl));
        std::vector<size_t> idx;
        for (size_t i = 0; i < ops.size(); i++) {
            if (slot_of[i] == sl) {
                idx.push_back(i);
            }
        }

        std::string qerr;
        Reply e;

        /* the part on node n (ASKING first: a slot being imported there) */
        auto run_part = [&](const Node &at, bool asking) {
            Redis &c = conn(at);
            used.insert(node_name(at.host, at.port));
            if (asking) {
                c.append({"ASKING"});
            }
            c.append({"MULTI"});
            for (size_t i : idx) {
                c.append(ops[i]);
            }
            c.append({"EXEC"});

            if (asking) {
                Reply a = c.next();
                check_reply(a.get(), "ASKING");
            }
            Reply m = c.next();
            check_reply(m.get(), "MULTI");
            qerr.clear();
            for (size_t i : idx) {
                Reply q = c.next();
                queue_replies[i] = "+QUEUED\r\n";
                if (reply_is_error(q.get())) {
                    std::string t;
                    reply_to_resp(q.get(), &t);
                    queue_replies[i] = t;
                    if (qerr.empty()) {
                        qerr = reply_string(q.get());
                    }
                }
            }
            e = c.next();
        };

        run_part(n, false);

        std::string ah;
        int ap;
        if (starts_with(qerr, "ASK ")
            && redirect_target(qerr, n.host, &ah, &ap))
        {
            /* the slot is migrating and a key is already on the new node:
             * the part there (its WATCH stayed on the old node) */
            run_part(Node{ah, ap}, true);
        }

        bool moved = starts_with(qerr, "MOVED ") || starts_with(qerr, "ASK ")
                     || starts_with(qerr, "TRYAGAIN")
                     || starts_with(qerr, "CLUSTERDOWN");

        if (part == 0 && (moved || (e && e->type == REDIS_REPLY_NIL))) {
            /* nothing done: as a watched key changed, so that the caller
             * reads again (with the map read again after a move) */
            if (moved) {
                refresh();
                std::fill(queue_replies.begin(), queue_replies.end(),
                          "+QUEUED\r\n");
            }
            refused = true;
            break;
        }

        if (part > 0 && (moved || !e || e->type != REDIS_REPLY_ARRAY)) {
            unwatch();
            fail(kExitRedis, "redis cluster: the change was made only in part "
                 "(its commands are in " + std::to_string(order.size())
                 + " cluster slots, done one after the other, and part "
                 + std::to_string(part + 1) + " was refused"
                 + (qerr.empty() ? std::string() : ": " + printable(qerr))
                 + "); check the key with \"apikeyctl show\" and run the "
                 "command again");
        }

        if (!qerr.empty() || !e || e->type != REDIS_REPLY_ARRAY) {
            /* a queueing error: EXECABORT, given back as is */
            ready_.push_back(reply_from_resp("+OK\r\n"));
            for (size_t i = 0; i < ops.size(); i++) {
                ready_.push_back(reply_from_resp(queue_replies[i]));
            }
            std::string t;
            reply_to_resp(e.get(), &t);
            ready_.push_back(reply_from_resp(t));
            unwatch();
            return;
        }

        for (size_t k = 0; k < idx.size() && k < e->elements; k++) {
            reply_to_resp(e->element[k], &results[idx[k]]);
        }
    }

    /* EXEC ends the WATCH of its connection; the others end here */
    std::vector<std::string> rest;
    for (const std::string &w : watching_) {
        if (!used.count(w)) {
            rest.push_back(w);
        }
    }
    watching_ = rest;
    unwatch();

    ready_.push_back(reply_from_resp("+OK\r\n"));
    for (size_t i = 0; i < ops.size(); i++) {
        ready_.push_back(reply_from_resp(queue_replies[i]));
    }
    if (refused) {
        ready_.push_back(reply_from_resp("*-1\r\n"));
        return;
    }
    std::string out = "*" + std::to_string(ops.size()) + "\r\n";
    for (const std::string &r : results) {
        out += r.empty() ? "$-1\r\n" : r;
    }
    ready_.push_back(reply_from_resp(out));
}


void ClusterClient::append(const Argv &argv)
{
    queued_.push_back(argv);
}


Reply ClusterClient::next()
{
    if (!ready_.empty()) {
        Reply r = std::move(ready_.front());
        ready_.pop_front();
        return r;
    }

    if (queued_.empty()) {
        fail(kExitInternal, "internal error: no command queued");
    }

    Argv argv = std::move(queued_.front());
    queued_.pop_front();

    if (upper(argv[0]) == "MULTI") {
        std::vector<Argv> ops;
        while (!queued_.empty() && upper(queued_.front()[0]) != "EXEC") {
            ops.push_back(std::move(queued_.front()));
            queued_.pop_front();
        }
        if (queued_.empty()) {
            fail(kExitInternal, "internal error: MULTI without EXEC");
        }
        queued_.pop_front();
        transaction(ops);
        return next();
    }

    return route(argv);
}


Reply ClusterClient::cmd_raw(const Argv &argv)
{
    append(argv);
    return next();
}


size_t ClusterClient::scan_nodes()
{
    refresh();
    scan_.clear();
    std::set<std::string> seen;
    for (const Range &r : map_) {
        if (seen.insert(node_name(r.host, r.port)).second) {
            scan_.push_back({r.host, r.port});
        }
    }
    return scan_.size();
}


Reply ClusterClient::cmd_on(size_t i, const Argv &argv)
{
    if (i >= scan_.size()) {
        fail(kExitInternal, "internal error: no cluster node "
                            + std::to_string(i));
    }
    Reply r = conn(scan_[i]).cmd_raw(argv);
    check_reply(r.get(), argv.empty() ? "" : argv[0]);
    return r;
}

} // namespace apikeyctl
