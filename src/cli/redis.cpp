/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: a synchronous Redis connection: hiredis as the RESP codec over
 * conn.hpp's blocking socket (plaintext, unix or TLS).
 */

#include "redis.hpp"

#include "util.hpp"

#include <cstdlib>
#include <cstring>

namespace apikeyctl {

namespace {

/*
 * hiredis's reader allocates an array's element table from its announced
 * size before any element arrives ("*2147483647" is 16 GB): a size above
 * this (or negative) is a protocol error instead.  apikeyctl's largest
 * arrays are pages of SCAN and XRANGE (COUNT bounded) and HGETALLs.
 */
constexpr int kMaxArray = 1 << 24;

redisReplyObjectFunctions reply_fn;
void *(*default_array)(const redisReadTask *task, int elements);

void *create_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > kMaxArray) {
        if (task->privdata != nullptr) {
            *static_cast<long long *>(task->privdata) = elements;
        }
        return nullptr;
    }
    return default_array(task, elements);
}

} // namespace


Redis::Redis(const RedisUrl &url, const std::string &password,
             double timeout_s, const TlsOptions &tls)
    : where_(url.where()), timeout_s_(timeout_s)
{
    reader_.reset(redisReaderCreate());
    if (!reader_) {
        fail(kExitInternal, "out of memory connecting to redis");
    }
    if (default_array == nullptr) {
        reply_fn = *reader_->fn;
        default_array = reply_fn.createArray;
        reply_fn.createArray = create_array;
    }
    reader_->fn = &reply_fn;
    reader_->privdata = &bad_array_;

    conn_.reset(new Conn(url, tls, timeout_s));

    if (!password.empty()) {
        Argv auth = url.user.empty() ? Argv{"AUTH", password}
                                     : Argv{"AUTH", url.user, password};
        Reply r = cmd_raw(auth);
        wipe(auth.back());
        if (reply_is_error(r.get())) {
            fail(kExitRedis, "redis at " + where_ + " refused the password: "
                             + reply_string(r.get()));
        }
    }

    if (url.db != 0) {
        Reply r = cmd_raw({"SELECT", std::to_string(url.db)});
        if (reply_is_error(r.get())) {
            fail(kExitRedis, "redis at " + where_ + ": SELECT "
                             + std::to_string(url.db) + ": "
                             + reply_string(r.get()));
        }
    }
}


Redis::~Redis()
{
    wipe(out_);     /* may still hold an AUTH command */
}


void Redis::append(const Argv &argv)
{
    std::vector<const char *> p;
    std::vector<size_t> l;
    p.reserve(argv.size());
    l.reserve(argv.size());
    for (const std::string &a : argv) {
        p.push_back(a.data());
        l.push_back(a.size());
    }

    char *cmd = nullptr;
    int len = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()),
                                     p.data(), l.data());
    if (len < 0 || cmd == nullptr) {
        fail(kExitInternal, "out of memory formatting a redis command");
    }

    out_.append(cmd, static_cast<size_t>(len));
    /* the command may be AUTH: no copy of the password is left behind */
    std::memset(cmd, 0, static_cast<size_t>(len));
    redisFreeCommand(cmd);
}


void Redis::flush()
{
    if (out_.empty()) {
        return;
    }

    conn_->write_all(out_.data(), out_.size(), mono_now() + timeout_s_);
    wipe(out_);
    out_.clear();
}


Reply Redis::next()
{
    flush();

    double deadline = mono_now() + timeout_s_;
    char buf[16384];

    for ( ;; ) {
        void *r = nullptr;

        if (redisReaderGetReply(reader_.get(), &r) != REDIS_OK) {
            fail(kExitRedis, "redis at " + where_ + ": protocol error: "
                             + reader_error());
        }

        if (r != nullptr) {
            return Reply(static_cast<redisReply *>(r));
        }

        size_t n = conn_->read_some(buf, sizeof(buf), deadline);

        if (redisReaderFeed(reader_.get(), buf, n) != REDIS_OK) {
            fail(kExitRedis, "redis at " + where_ + ": protocol error: "
                             + reader_error());
        }
    }
}


std::string Redis::reader_error() const
{
    if (bad_array_ != kNoBadArray) {
        return "an array of " + std::to_string(bad_array_)
               + " elements announced (at most "
               + std::to_string(kMaxArray) + " are taken)";
    }
    return std::string(reader_->errstr);
}


Reply Redis::cmd_raw(const Argv &argv)
{
    append(argv);
    return next();
}


Reply Client::cmd(const Argv &argv)
{
    Reply r = cmd_raw(argv);
    check_reply(r.get(), argv.empty() ? "" : argv[0]);
    return r;
}


bool reply_is_error(const redisReply *r) noexcept
{
    return r && r->type == REDIS_REPLY_ERROR;
}


std::string reply_string(const redisReply *r)
{
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS
              || r->type == REDIS_REPLY_ERROR))
    {
        return std::string(r->str, r->len);
    }
    return std::string();
}


void check_reply(const redisReply *r, const std::string &what)
{
    if (reply_is_error(r)) {
        std::string msg = reply_string(r);
        std::string hint;
        if (msg.compare(0, 6, "NOAUTH") == 0) {
            hint = " (give the password with --password-file or "
                   "APIKEY_REDIS_PASSWORD)";
        }
        fail(kExitRedis, "redis: " + what + ": " + printable(msg) + hint);
    }
}

} // namespace apikeyctl
