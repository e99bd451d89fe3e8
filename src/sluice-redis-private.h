/* sluice-redis-private.h: what both ends of the Redis workers share:
 * endpoints, connections, commands, entries and values on the wire
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <hiredis/hiredis.h>
#include <poll.h>

G_BEGIN_DECLS

/* Key names (doc/remote-workers.md documents them). */
#define SLUICE_REDIS_GROUP "sluice-workers"
#define SLUICE_REDIS_CALLS_PREFIX "sluice:calls"
#define SLUICE_REDIS_REPLIES_PREFIX "sluice:replies:"
/* Cancellations: entries with a "cancel" field, the call id; every remote
 * worker reads all of them. Trimmed to about this many. */
#define SLUICE_REDIS_CONTROL_STREAM "sluice:control"
#define SLUICE_REDIS_CONTROL_MAXLEN "1000"

/* The protocol version of the entries (doc/remote-workers.md), with
 * one-letter field names. Version 3: a call entry holds several calls of
 * one client: `v` (this version), `i` (CLIENT-ID:SEQUENCE of the first,
 * which a remote worker of version 2 answers with its version error), `b`
 * (the calls: SLUICE_REDIS_CALLS_TYPE, little endian: sequence, function,
 * the arguments' type and data, attempt) and, for the entries a remote
 * worker split from a batch whose worker died, `p` (the deliveries of the
 * batch before). Answers to them go to the reply stream
 * sluice:replies:CLIENT-ID, several per entry: `v`, `w` (the remote
 * worker) and `b` (SLUICE_REDIS_ANSWERS_TYPE: sequence, deliveries, the
 * result's type and data, or an empty type and the error's domain, code
 * and message). Version 2 (sessions 10 and 11): one call per entry, `v`,
 * `i` (CLIENT-ID:SEQUENCE), `f`, `t`, `a`, `n`; its answer `i` (the
 * SEQUENCE), `w`, `d` (the deliveries, when more than 1), then `t` and `r`
 * or `e`, `c` and `m`; remote workers still serve it, and answer in its
 * names. Version 1 (session 9 and before) had no `v` and long names (`id`,
 * `fn`, `type`, `value`, `reply`, `attempt`; answers `id`, `worker`,
 * `deliveries`, `type`, `value` or `domain`, `code`, `message`): a remote
 * worker answers such an entry with an error, in version 1's names. */
#define SLUICE_REDIS_PROTOCOL "3"
#define SLUICE_REDIS_CALLS_TYPE "a(tssayu)"
#define SLUICE_REDIS_ANSWERS_TYPE "a(tusaysis)"
/* Bytes of calls (or answers) in one entry at most, unless one alone is
 * larger. */
#define SLUICE_REDIS_MAX_ENTRY_BYTES (1024 * 1024)
/* Entries an XREAD of sluice_redis_args_init_xread () returns at most. */
#define SLUICE_REDIS_XREAD_COUNT 256

/* Where a Redis server is: `redis://[:PASSWORD@]HOST[:PORT][/DB]` or
 * `unix:PATH`. */
typedef struct
{
  char *host; /* NULL for a unix socket */
  int port;
  char *path; /* the unix socket, or NULL */
  int db;
  char *password; /* nullable */
} SluiceRedisEndpoint;

SluiceRedisEndpoint *
sluice_redis_endpoint_parse (const char *endpoint, const char *password, GError **error);
void sluice_redis_endpoint_free (SluiceRedisEndpoint *endpoint);

/* A connection (blocking commands, each end uses its own in each of its
 * threads): connected, authenticated and on its database, or NULL with
 * @error set. Commands time out after @timeout_ms. */
redisContext *
sluice_redis_connect (const SluiceRedisEndpoint *endpoint, guint timeout_ms, GError **error);

/* The parts of the stream entry id @id (MS-SEQ, as Redis gives it; a
 * missing SEQ is 0). */
void sluice_redis_entry_id_parse (const char *id, guint64 *ms, guint64 *seq);

/* The largest value Redis takes in one command argument
 * (`proto-max-bulk-len`, CONFIG GET; blocking), or 0 when unknown (CONFIG
 * denied by an ACL or renamed). Fails only when the connection does. */
gboolean sluice_redis_max_bulk (redisContext *c, guint64 *max_bulk, GError **error);

/* Whether @c still works after a command failed: FALSE when the
 * connection is lost (an error reply leaves it working). */
gboolean sluice_redis_connected (redisContext *c);

/* Whether @error is an error reply that goes away by itself: Redis
 * loading its data after a restart (LOADING), busy with a script (BUSY),
 * a replica without its master (MASTERDOWN, TRYAGAIN). */
gboolean sluice_redis_error_is_transient (const GError *error);

/* Tells sluice_redis_reconnect () to give up. */
typedef gboolean (*SluiceRedisStopFunc) (gpointer data);

/* Connects as sluice_redis_connect (), trying again after 50 ms, 100 ms,
 * ... up to every second until it succeeds, @stop returns TRUE (checked
 * every 10 ms) or @deadline (monotonic time; 0 for none) passes: then
 * NULL with @error set. */
redisContext *sluice_redis_reconnect (const SluiceRedisEndpoint *endpoint,
                                      guint timeout_ms,
                                      gint64 deadline,
                                      SluiceRedisStopFunc stop,
                                      gpointer stop_data,
                                      GError **error);

/* A command's arguments, binary safe. */
typedef struct
{
  GPtrArray *argv; /* of char * (owned) */
  GArray *lens;    /* of size_t */
} SluiceRedisArgs;

void sluice_redis_args_init (SluiceRedisArgs *args);
void sluice_redis_args_clear (SluiceRedisArgs *args);
void sluice_redis_args_add (SluiceRedisArgs *args, const char *s);
void sluice_redis_args_add_len (SluiceRedisArgs *args, const void *data, gsize len);
void sluice_redis_args_add_printf (SluiceRedisArgs *args, const char *format, ...)
    G_GNUC_PRINTF (2, 3);
/* Appends @args to the pipeline of @c. */
gboolean sluice_redis_args_append (SluiceRedisArgs *args, redisContext *c, GError **error);

/* Sends @args and waits for the reply: NULL with @error set on a lost
 * connection or an error reply. Clears @args. */
redisReply *sluice_redis_command (redisContext *c, SluiceRedisArgs *args, GError **error);
/* The next reply of a pipeline, errors as sluice_redis_command (). */
redisReply *sluice_redis_get_reply (redisContext *c, GError **error);

/* Connections driven by poll () (one thread, several connections): after
 * connecting (blocking), a connection is made non-blocking; hiredis then
 * writes what it can (sluice_redis_flush ()), reads what is there
 * (sluice_redis_read_some ()), and replies are taken from what was read
 * (sluice_redis_take_reply ()). The thread must block SIGPIPE. */
void sluice_redis_set_nonblocking (redisContext *c, gboolean nonblocking);
/* Wakes a thread waiting in poll () on @wake_fd (an eventfd) if it is
 * @polling, once until it wakes (*@woken; the waiter clears it and reads
 * @wake_fd). Called under the lock that guards @polling and *@woken. */
void sluice_redis_wake_locked (int wake_fd, gboolean polling, gboolean *woken);
/* Waits in poll () for @fds (the first is @wake_fd) up to @until
 * (monotonic time), then, under @mutex, clears *@polling and takes the
 * wake-ups (see sluice_redis_wake_locked ()). */
void sluice_redis_poll (struct pollfd *fds,
                        guint n_fds,
                        gint64 until,
                        GMutex *mutex,
                        gboolean *polling,
                        gboolean *woken);
/* Writes what it can of the pipeline of @c: FALSE with @error set when the
 * connection is lost. */
gboolean sluice_redis_flush (redisContext *c, GError **error);
/* Whether @c has commands not yet written. */
gboolean sluice_redis_has_output (redisContext *c);
/* Reads what has come, up to about 1 MiB: FALSE with @error set when the
 * connection is lost. */
gboolean sluice_redis_read_some (redisContext *c, GError **error);

typedef enum
{
  SLUICE_REDIS_TAKE_NONE,    /* no complete reply read yet */
  SLUICE_REDIS_TAKE_REPLY,   /* *reply (transfer full) */
  SLUICE_REDIS_TAKE_REFUSED, /* an error reply, in *error */
  SLUICE_REDIS_TAKE_BROKEN,  /* a protocol error: the connection is lost (*error) */
} SluiceRedisTake;
SluiceRedisTake sluice_redis_take_reply (redisContext *c, redisReply **reply, GError **error);

/* Sets @args (initialised by this function) to read up to 256 entries of
 * @stream after @last_id, blocking up to @block_ms. */
void sluice_redis_args_init_xread (SluiceRedisArgs *args,
                                   const char *stream,
                                   const char *last_id,
                                   guint block_ms);
/* The entries of the answer of such an XREAD ([[stream, [entry, ...]]]),
 * or NULL when there are none (nil: the block timed out). */
redisReply *sluice_redis_xread_entries (redisReply *reply);

/* The stream of @series (NULL or "" for the default series). */
char *sluice_redis_calls_stream (const char *series);
/* The reply stream of the call @call_id (CLIENT-ID:SEQUENCE), or NULL. */
char *sluice_redis_reply_stream (const char *call_id);

/* A stream entry ([id, [field, value, ...]]): its fields, by name, as
 * redisReply strings (not owned), or NULL if it is not an entry. */
GHashTable *sluice_redis_entry_fields (redisReply *entry);
const char *sluice_redis_field (GHashTable *fields, const char *name, gsize *len);

/* Values cross as their type string and serialised data, little endian
 * whatever the machine. */
void sluice_redis_args_add_value (SluiceRedisArgs *args,
                                  const char *type_field,
                                  const char *value_field,
                                  GVariant *value);
/* The value of the "type" and "value" fields; NULL with @error set if
 * they are missing or not a definite type. Transfer full, not floating. */
GVariant *sluice_redis_fields_get_value (GHashTable *fields,
                                         const char *type_field,
                                         const char *value_field,
                                         GError **error);

/* A value of @type (a type string, checked) from its serialisation
 * @data, little endian; NULL with @error set when @type is not a definite
 * type. Transfer full, not floating. */
GVariant *sluice_redis_value_new (const char *type, const void *data, gsize len, GError **error);
/* The members @first to @first + @n - 1 of the tuple @tuple into
 * @members (transfer full each): cheaper than g_variant_get () with a
 * format string, which takes every member and parses the format each
 * time (a batch's calls and answers are read this way). */
void sluice_redis_tuple_members (GVariant *tuple, guint first, guint n, GVariant **members);
/* Unrefs the @n values of @members. */
void sluice_redis_members_clear (GVariant **members, guint n);
/* @value little endian (transfer full; @value is not consumed). */
GVariant *sluice_redis_value_to_wire (GVariant *value);
/* The value @data of @type, received: a GVariant of that type whatever
 * the bytes are (untrusted data reads as defaults), or NULL when @data
 * is not of a definite type. Transfer full, not floating. */
GVariant *sluice_redis_wire_to_value (const char *type, redisReply *data);

/* Sets @args (initialised by this function) to add an entry of version 3
 * to @stream (with NOMKSTREAM if @nomkstream): `v`, @name_field (`i` or
 * `w`) with @name, and `b`, @batch little endian. */
void sluice_redis_args_init_batch (SluiceRedisArgs *args,
                                   const char *stream,
                                   gboolean nomkstream,
                                   const char *name_field,
                                   const char *name,
                                   GVariant *batch);

/* Errors cross as their domain (the quark's string), code and message
 * (`e`, `c`, `m`; with @version1, `domain`, `code`, `message`). */
void sluice_redis_args_add_error (SluiceRedisArgs *args, const GError *error, gboolean version1);
GError *sluice_redis_fields_get_error (GHashTable *fields);

G_END_DECLS
