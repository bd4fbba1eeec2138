/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * apikeyctl: the ops command-line tool of ngx_http_api_key_module.
 *
 * Creates, revokes, rotates, shows, lists, changes and deletes API keys in
 * the Redis that nginx reads, and publishes the events nginx listens for.
 * Only hashes of keys are ever stored; a new key is printed once.
 */

#include "commands.hpp"
#include "util.hpp"

#include <cstring>
#include <iostream>
#include <new>

namespace apikeyctl {
namespace {

const char kVersion[] = "apikeyctl 0.1.0";

const char kMainHelp[] =
"usage: apikeyctl [options] COMMAND [command options] [arguments]\n"
"\n"
"Manages the API keys that ngx_http_api_key_module reads from Redis.\n"
"Only the hash of a key is stored; a new key is printed once.\n"
"\n"
"commands:\n"
"  create   make a new key and print it once\n"
"  revoke   deny a key from now on (status=revoked)\n"
"  rotate   replace a key; the old one keeps working for --grace\n"
"  set      change fields of a key (field=value, field= removes)\n"
"  show     show a key's id, hash and fields (never the key)\n"
"  list     list keys, optionally filtered by owner, status, plan\n"
"  usage    show a key's quota counters for the current windows\n"
"  delete   remove a key's record and its id\n"
"  audit    show the audit trail of changes (all, or of one key)\n"
"  import   store existing keys read from stdin (migration)\n"
"  leaked   revoke the live keys among strings read from stdin\n"
"  report   key counts for Prometheus (node_exporter textfile)\n"
"\n"
"A key is named by the key itself, by its id, or by its hash; \"-\" reads\n"
"the key (or id) from the first line of stdin, so that a key never shows\n"
"in shell history or ps.\n"
"\n"
"options (before or after the command):\n"
"  --redis URL           redis://[user[:password]@]host:port[/db],\n"
"                        rediss://... (TLS) or unix:/path.sock[?db=N];\n"
"                        redis-sentinel://[user[:password]@]h1:p1,h2:p2,...\n"
"                        /MASTER[/db] (the master the sentinels name);\n"
"                        redis-cluster://[user[:password]@]h1:p1,h2:p2,...\n"
"                        (a Redis Cluster); rediss-sentinel://, rediss-\n"
"                        cluster:// speak TLS to the data nodes\n"
"                        (env APIKEY_REDIS_URL; default redis://127.0.0.1:6379)\n"
"  --password-file FILE  Redis password (env APIKEY_REDIS_PASSWORD); one\n"
"                        trailing newline is not part of it. redis://user@...\n"
"                        names an ACL user whose password this gives\n"
"  --sentinel-password-file FILE\n"
"                        the sentinels' password (AUTH), for\n"
"                        redis-sentinel:// (env APIKEY_SENTINEL_PASSWORD)\n"
"  --prefix P            record name prefix, as api_key_redis prefix=\n"
"                        (env APIKEY_PREFIX; default apikey:)\n"
"  --channel C           event channel, as api_key_redis channel=\n"
"                        (env APIKEY_CHANNEL; default apikey:events)\n"
"  --hash sha256|hmac-sha256\n"
"                        as api_key_hash (env APIKEY_HASH; default sha256)\n"
"  --secret-file FILE    the HMAC secret, as api_key_hash secret_file=\n"
"                        (env APIKEY_SECRET_FILE)\n"
"  --timeout SECONDS     Redis connect and command timeout (default 2)\n"
"  --actor NAME          who makes the change, for the audit trail\n"
"                        (env APIKEY_ACTOR; default user@host)\n"
"\n"
"TLS, for rediss:// URLs only (TLS 1.2 or later; the server certificate is\n"
"verified against the system's CA certificates and the URL's host):\n"
"  --tls-ca FILE         the CA certificates (PEM) to verify the server with,\n"
"                        instead of the system's (env APIKEY_TLS_CA)\n"
"  --tls-cert FILE       a client certificate (PEM, with its chain) and\n"
"  --tls-key FILE        its private key (PEM), for servers that ask for one\n"
"                        (env APIKEY_TLS_CERT, APIKEY_TLS_KEY)\n"
"  --tls-name NAME       the name the server certificate must have, and the\n"
"                        SNI, instead of the URL's host (env APIKEY_TLS_NAME)\n"
"  --tls-insecure        do not verify the server (tests only; env\n"
"                        APIKEY_TLS_INSECURE=1); --tls-name then only sets\n"
"                        the SNI\n"
"  -h, --help            this help; \"apikeyctl COMMAND --help\" for a command\n"
"  --version             the version\n"
"\n"
"Results go to stdout, notes and errors to stderr. Every command takes\n"
"--json: its result as JSON on stdout (one object; list: an array); errors\n"
"stay text on stderr, with the exit code.\n"
"\n"
"exit codes: 0 ok, 2 usage or validation error, 3 no such key or id,\n"
"4 Redis unreachable or error, 1 internal error.\n";

struct CommandInfo {
    const char *name;
    int (*run)(Context &, const Args &);
    const char *options;     /* space-separated options with a value */
    const char *flags;       /* space-separated options without one */
    const char *help;
};

const CommandInfo kCommands[] = {
    {"create", cmd_create,
     "owner plan scopes ips referrers rate burst rate-scope quota expires id "
     "key-prefix",
     "json",
"usage: apikeyctl create [--owner O] [--plan P] [--scopes \"a b\"]\n"
"                        [--ips LIST] [--referrers LIST] [--rate R]\n"
"                        [--burst N] [--rate-scope node|cluster] [--quota Q]\n"
"                        [--expires WHEN] [--id ID] [--key-prefix P] [--json]\n"
"\n"
"Makes a key, stores its hash with the given fields (one MULTI/EXEC with the\n"
"id lookup) and prints the key once on stdout; id and hash go to stderr.\n"
"With --json stdout is {\"key\":...,\"id\":...,\"hash\":...}.\n"
"\n"
"  --owner O, --plan P   text for $api_key_owner / $api_key_plan\n"
"  --scopes \"a b\"        space-separated scopes\n"
"  --ips LIST            comma-separated addresses and CIDRs, e.g.\n"
"                        10.0.0.0/8,2001:db8::/32\n"
"  --referrers LIST      comma-separated hosts, *.example.com wildcards\n"
"  --rate R              N/s, N/m or N/h: a bucket of N (N requests at once,\n"
"                        refilled at N per period)\n"
"  --burst N             with --rate: N + 1 at once, then one per period / N\n"
"                        (GCRA, as nginx's limit_req; 0: one at a time)\n"
"  --rate-scope S        with --rate: node (each nginx node counts it) or\n"
"                        cluster (one rate for all nodes sharing the Redis);\n"
"                        default: api_key_zone rate_scope=\n"
"  --quota Q             N/hour, N/day or N/month\n"
"  --expires WHEN        90d (from now; s m h d w), 2027-01-31 (00:00 UTC),\n"
"                        2027-01-31T12:00:00Z, or unix seconds\n"
"  --id ID               public id (1-64 of A-Z a-z 0-9 . _ : -); must be\n"
"                        unused. Default: the first 12 hex digits of the hash\n"
"  --key-prefix P        the key's prefix, 1-32 of A-Z a-z 0-9 _ (default ak)\n"
"\n"
"Besides the given fields the record holds created_at (unix seconds) and\n"
"key_prefix (kept by rotate); the module ignores both.\n"
"\n"
"Every value is checked with the module's own rules: a value the module\n"
"would reject is refused (exit 2) naming the field.\n"},

    {"revoke", cmd_revoke, "reason", "json",
"usage: apikeyctl revoke KEY|ID|HASH|- [--reason TEXT] [--json]\n"
"\n"
"Sets status=revoked, revoked_at (unix seconds), revoked_by (the actor) and\n"
"reason (--reason, else an earlier one is removed), and publishes\n"
"\"revoke HASH\" on the channel, in one transaction: every nginx listening\n"
"denies the key from its next request.\n"
"\"apikeyctl set KEY|ID status=active\" undoes it.\n"
"--json prints {\"id\",\"hash\",\"status\":\"revoked\",\"was\",\"reason\"}\n"
"(was: the status before).\n"},

    {"rotate", cmd_rotate, "grace id key-prefix expires", "json",
"usage: apikeyctl rotate KEY|ID|HASH|- --grace DURATION [--id ID]\n"
"                        [--key-prefix P] [--expires WHEN] [--json]\n"
"\n"
"Gives the key a new secret and prints it once like create. The new record\n"
"has the same id (its lookup moves to it), fields (owner, plan, scopes,\n"
"rules, limits) and identity (the first secret's hash, which names the\n"
"quota counters: the count goes on). The old record becomes an alias:\n"
"alias_until=now + grace (never past its expiry); the module accepts the\n"
"old secret as the same key until then, and refuses it as revoked after.\n"
"Publishes \"update OLDHASH\".\n"
"\n"
"  --grace DURATION   how long the old secret keeps working: 30m, 24h, 7d,\n"
"                     seconds; 0 ends it now (required)\n"
"  --id ID            give the key another id (default: it keeps its id)\n"
"  --key-prefix P     the new key's prefix (default: the old key's, as\n"
"                     create recorded it in key_prefix; else ak)\n"
"  --expires WHEN     the new key's expiry (default: the old key's; needed\n"
"                     when the old key has expired); never: none\n"
"\n"
"A revoked key's replacement is active; a disabled key's stays disabled.\n"
"The new record holds rotated_from=OLDHASH, the old one rotated_to=NEWHASH\n"
"(fields the module ignores, as created_at and key_prefix). An old secret\n"
"(a record with alias_until) cannot be rotated: rotate the current one.\n"
"--json adds old_id, old_hash and alias_until (also as old_expires_at).\n"},

    {"set", cmd_set, "", "json",
"usage: apikeyctl set KEY|ID|HASH|- field=value... [--json]\n"
"\n"
"Changes fields of a key's record and publishes \"update HASH\" (and\n"
"\"revoke HASH\" when status becomes revoked or disabled).\n"
"\"field=\" with an empty value removes the field (no limit).\n"
"\n"
"fields: id owner plan status expires_at (or expires) scopes ips referrers\n"
"        rate burst quota alias_until (identity is kept by rotate)\n"
"  status      active | revoked | disabled\n"
"  expires_at  as create --expires (unix seconds, 90d, 2027-01-31, ...),\n"
"              0 or never: no expiry; a past time expires the key\n"
"  id          a new public id (must be unused); the id lookup moves\n"
"\n"
"The record after the change is checked as a whole with the module's rules.\n"
"--json prints {\"id\",\"hash\",\"set\":[fields],\"removed\":[fields]}.\n"},

    {"show", cmd_show, "", "json",
"usage: apikeyctl show KEY|ID|HASH|- [--json]\n"
"\n"
"Shows the key's id, hash and fields; never the key. Warns when the module\n"
"would reject the record. The rate says how many requests it admits at once\n"
"(burst + 1; without a burst field, N of N/period). last_used is the last\n"
"request nginx saw with the key (api_key_zone usage_flush=, to within that\n"
"interval; kept 400 days). --json prints\n"
"{\"id\",\"hash\",\"fields\",\"id_lookup\",\"valid\",\"last_used\"} (and\n"
"\"problem\" when not valid, \"rate_at_once\" with a valid rate;\n"
"last_used: unix seconds or null).\n"},

    {"list", cmd_list, "owner status plan page-size within unused", "json",
"usage: apikeyctl list [--owner O] [--status S [--within D]] [--plan P]\n"
"                      [--page-size N] [--unused DURATION] [--json]\n"
"\n"
"Lists every key record ({prefix} + 64 hex digits), each exactly once,\n"
"with SCAN (never KEYS) and pipelined reads of N records at a time\n"
"(default 1000). Columns: ID STATUS OWNER PLAN EXPIRES HASH, tab-separated;\n"
"the count goes to stderr. --json prints an array of\n"
"{\"id\":...,\"hash\":...,\"fields\":{...}}.\n"
"\n"
"STATUS is what the module makes of the record now: revoked or disabled\n"
"(the status field), rotated (an old secret whose grace ended), expired\n"
"(expires_at passed), alias (an old secret in its grace), else active.\n"
"\n"
"  --status S   one of those, or expiring: active keys whose expires_at\n"
"               is within --within D (s m h d w; default 30d)\n"
"  --unused D   only keys not used for D (90d; s m h d w): no last use\n"
"               written by nginx in that time (never used, or used before);\n"
"               adds a LAST_USED column (\"never\": none in 400 days) and\n"
"               \"last_used\" to --json\n"},

    {"usage", cmd_usage, "days", "json",
"usage: apikeyctl usage KEY|ID|HASH|- [--days N] [--json]\n"
"\n"
"Shows the key's last use and its requests per UTC day for the last N days\n"
"(default 30, at most 92), by class: allowed, denied_status (expired,\n"
"revoked, disabled), denied_policy (ip, referrer, scope), denied_limit\n"
"(rate, quota), as nginx wrote them (api_key_zone usage_flush=; today's\n"
"lag by up to that interval), read from\n"
"{prefix}usage:{{prefix}{hash}}:requests:{day_start} and :last_used.\n"
"\n"
"Then, apart, the quota state: the key's quota, the counter of the current\n"
"window, what remains, and the counters of the current hour, day and month\n"
"(UTC), read from\n"
"{prefix}usage:{{prefix}{hash}}:{hour|day|month}:{window_start} ({hash}: the\n"
"record's identity when it has one: the counters are kept across rotations).\n"
"These counters hold what nginx nodes have taken from the quota: counts\n"
"leased to a node (api_key_zone quota_lease=) and not used yet are\n"
"included, so they are not request counts.\n"
"--json: {\"id\",\"hash\",\"quota\",\"limit\",\"period\",\"used\",\"remaining\",\n"
"\"window_start\",\"window_end\",\"windows\":{\"hour\"|\"day\"|\"month\":\n"
"{\"start\",\"end\",\"used\"}},\"last_used\",\"requests\":[{\"day\",\"start\",\n"
"\"allowed\",\"denied_status\",\"denied_policy\",\"denied_limit\"}]}\n"
"(limit..window_end only with a quota; last_used unix seconds or null).\n"},

    {"delete", cmd_delete, "", "json",
"usage: apikeyctl delete KEY|ID|HASH|- [--json]\n"
"\n"
"Removes the key's record and its id lookup, and publishes \"update HASH\":\n"
"the key is unknown from then on. Also removes an id whose record is gone.\n"
"--json prints {\"id\",\"hash\",\"record_deleted\":true|false}.\n"},

    {"audit", cmd_audit, "since", "json",
"usage: apikeyctl audit [KEY|ID|HASH|-] [--since WHEN] [--json]\n"
"\n"
"Prints the audit trail ({prefix}audit, a Redis stream) oldest first: one\n"
"line per change apikeyctl made (create, revoke, rotate, set, delete,\n"
"import, leaked): time, actor, command, key id, the fields changed as\n"
"{\"field\":[old,new]} (null: absent), and the reason. With KEY only the\n"
"entries of that key (by id, or by hash: a key or hash given).\n"
"\n"
"  --since WHEN   entries from then on: 7d (ago), 2027-01-31, unix seconds\n"
"\n"
"--json prints an array of {\"entry\",\"time\",\"actor\",\"command\",\"id\",\n"
"\"hash\",\"changes\",\"reason\"}.\n"},

    {"import", cmd_import,
     "owner plan scopes ips referrers rate burst quota expires",
     "json jsonl",
"usage: apikeyctl import [--owner O] [--plan P] [...create's fields]\n"
"                        [--jsonl] [--json]\n"
"\n"
"Stores existing keys read from stdin, one per line, so that a team can\n"
"migrate without reissuing keys: each key's hash gets a record with the\n"
"fields given as options (as create), or with --jsonl each line is a JSON\n"
"object {\"key\":...,\"id\":...,\"owner\":...,\"expires_at\":...} (fields of\n"
"the record; its values override the options). A key must be 1 to 256\n"
"printable characters (api_key_format any); one whose hash or id is in use\n"
"is skipped. Prints \"imported ID HASH\" (or \"skipped LINE: why\") per line\n"
"and the counts; exits 2 when a line was skipped. Keys are never printed.\n"},

    {"leaked", cmd_leaked, "", "json",
"usage: apikeyctl leaked [--json] < candidates\n"
"\n"
"Reads candidate strings from stdin (a secret scanner's findings, one per\n"
"line), revokes every one that is a live key (reason \"leaked\"), prints the\n"
"ids it revoked and the count of the others. Exit 0 when none was a live\n"
"key, 5 when it revoked any (so a pipeline stops and someone looks).\n"
"--json prints {\"revoked\":[{\"id\",\"hash\"}],\"already\":N,\n"
"\"not_keys\":N}.\n"},

    {"report", cmd_report, "", "prometheus",
"usage: apikeyctl report --prometheus [FILE]\n"
"\n"
"Writes key counts in Prometheus' text format, for node_exporter's textfile\n"
"collector (FILE is written to FILE.tmp, then renamed over FILE; without\n"
"FILE, or -, to stdout): apikey_keys{status,plan} (status as list shows\n"
"it; at most 100 plans, the others as plan=\"other\"),\n"
"apikey_keys_expiring{within=\"7d\"|\"30d\"} (active keys),\n"
"apikey_keys_unused{for=\"90d\"} (active keys with no last use written by\n"
"nginx in 90 days: api_key_zone usage_flush=),\n"
"apikey_report_timestamp_seconds. Run it from cron, e.g. every 5 minutes.\n"},
};

const char kGlobalOptions[] =
    "redis password-file sentinel-password-file prefix channel hash "
    "secret-file timeout actor "
    "tls-ca tls-cert tls-key tls-name";
const char kGlobalFlags[] = "help version tls-insecure";


bool in_list(const char *list, const std::string &name)
{
    std::string l = std::string(" ") + list + " ";
    return l.find(" " + name + " ") != std::string::npos;
}


const CommandInfo *find_command(const std::string &name)
{
    for (const CommandInfo &c : kCommands) {
        if (name == c.name) {
            return &c;
        }
    }
    return nullptr;
}


Args parse_args(int argc, char **argv, const CommandInfo **cmd)
{
    Args args;
    *cmd = nullptr;
    bool only_positional = false;

    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];

        if (only_positional || a == "-" || a.size() < 2 || a[0] != '-') {
            if (*cmd == nullptr && !only_positional) {
                if (a == "help") {
                    args.opts["help"] = "";
                    continue;
                }
                *cmd = find_command(a);
                if (*cmd == nullptr) {
                    if (args.has("help")) {
                        usage_error("no command " + quoted(a));
                    }
                    usage_error("unknown command " + quoted(a)
                                + " (see apikeyctl --help)");
                }
                args.command = a;
                continue;
            }
            if (*cmd == nullptr) {
                usage_error("no command given (see apikeyctl --help)");
            }
            args.pos.push_back(a);
            continue;
        }

        if (a == "--") {
            only_positional = true;
            continue;
        }

        if (a == "-h") {
            a = "--help";
        }

        if (a.compare(0, 2, "--") != 0) {
            usage_error("unknown option " + quoted(a)
                        + " (options are --long; see --help)");
        }

        std::string name = a.substr(2), value;
        bool has_value = false;
        size_t eq = name.find('=');
        if (eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_value = true;
        }

        bool takes_value = in_list(kGlobalOptions, name)
                           || (*cmd && in_list((*cmd)->options, name));
        bool flag = in_list(kGlobalFlags, name)
                    || (*cmd && in_list((*cmd)->flags, name));

        if (!takes_value && !flag) {
            std::string where = *cmd ? std::string(" for ") + (*cmd)->name
                                     : std::string();
            usage_error("unknown option --" + printable(name) + where
                        + " (see apikeyctl " + (*cmd ? (*cmd)->name : "")
                        + (*cmd ? " " : "") + "--help)");
        }

        if (flag && has_value) {
            usage_error("option --" + name + " takes no value");
        }

        if (takes_value && !has_value) {
            if (i + 1 >= argc) {
                usage_error("option --" + name + " needs a value");
            }
            value = argv[++i];
        }

        args.opts[name] = value;
    }

    return args;
}


int run(int argc, char **argv)
{
    const CommandInfo *cmd;
    Args args = parse_args(argc, argv, &cmd);

    if (args.has("version")) {
        std::cout << kVersion << '\n';
        return kExitOk;
    }

    if (args.has("help")) {
        if (cmd == nullptr && !args.pos.empty()) {
            cmd = find_command(args.pos[0]);
        }
        std::cout << (cmd ? cmd->help : kMainHelp);
        return kExitOk;
    }

    if (cmd == nullptr) {
        std::cerr << kMainHelp;
        usage_error("no command given");
    }

    size_t stdin_args = 0;
    for (const std::string &p : args.pos) {
        stdin_args += p == "-";
    }
    if (stdin_args > 1) {
        usage_error("\"-\" (read from stdin) may be given once");
    }

    /* a key given as an argument: hide it from ps from now on (the copy in
     * args is what the command uses) */
    for (int i = 1; i < argc; i++) {
        size_t len = std::strlen(argv[i]);
        if (key_is_checksum(std::string(argv[i], len))) {
            std::memset(argv[i], '*', len);
        }
    }

    Context ctx(args);
    return cmd->run(ctx, args);
}

} // namespace
} // namespace apikeyctl


int main(int argc, char **argv)
{
    try {
        return apikeyctl::run(argc, argv);

    } catch (const apikeyctl::Error &e) {
        apikeyctl::note(e.what());
        return e.code();

    } catch (const std::bad_alloc &) {
        apikeyctl::note("out of memory");
        return apikeyctl::kExitInternal;

    } catch (const std::exception &e) {
        apikeyctl::note(std::string("internal error: ") + e.what());
        return apikeyctl::kExitInternal;

    } catch (...) {
        apikeyctl::note("internal error");
        return apikeyctl::kExitInternal;
    }
}
