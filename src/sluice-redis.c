/* sluice-redis.c: what both ends of the Redis workers share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * hiredis 0.14 (Debian 12) is used with blocking commands, each end in
 * threads of its own with a connection per thread: its GLib adapter has
 * no connect or command timeouts, and a blocking XREAD holds an
 * asynchronous connection as long as a blocking one, so the adapter would
 * buy nothing but a second code path.
 */

#include "sluice-private.h"

#include "sluice-redis-private.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

SluiceRedisEndpoint *
sluice_redis_endpoint_parse (const char *endpoint, const char *password, GError **error)
{
  SluiceRedisEndpoint *ep = g_new0 (SluiceRedisEndpoint, 1);

  if (g_str_has_prefix (endpoint, "unix:") && endpoint[5] != '\0')
    ep->path = g_strdup (endpoint + 5);
  else if (g_str_has_prefix (endpoint, "redis://"))
    {
      const char *rest = endpoint + strlen ("redis://");
      const char *at = strrchr (rest, '@');
      const char *slash, *colon;
      g_autofree char *hostport = NULL;

      if (at != NULL)
        {
          /* [USER]:PASSWORD@: only the password is used. */
          const char *pw = memchr (rest, ':', at - rest);

          ep->password = pw != NULL ? g_strndup (pw + 1, at - pw - 1) : NULL;
          rest = at + 1;
        }
      slash = strchr (rest, '/');
      hostport = slash != NULL ? g_strndup (rest, slash - rest) : g_strdup (rest);
      colon = strrchr (hostport, ':');
      ep->port = 6379;
      if (colon != NULL)
        {
          char *end = NULL;
          guint64 port = g_ascii_strtoull (colon + 1, &end, 10);

          if (end == colon + 1 || *end != '\0' || port == 0 || port > 65535)
            goto bad;
          ep->port = (int) port;
          ep->host = g_strndup (hostport, colon - hostport);
        }
      else
        ep->host = g_strdup (hostport);
      if (ep->host[0] == '\0')
        {
          g_free (ep->host);
          ep->host = g_strdup ("127.0.0.1");
        }
      if (slash != NULL && slash[1] != '\0')
        {
          char *end = NULL;
          guint64 db = g_ascii_strtoull (slash + 1, &end, 10);

          if (*end != '\0' || db > G_MAXINT)
            goto bad;
          ep->db = (int) db;
        }
    }
  else
    goto bad;

  if (password != NULL)
    {
      g_free (ep->password);
      ep->password = g_strdup (password);
    }
  return ep;

bad:
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               _ ("“%s” is not a Redis endpoint (redis://HOST:PORT/DB or unix:PATH)"), endpoint);
  sluice_redis_endpoint_free (ep);
  return NULL;
}

void
sluice_redis_endpoint_free (SluiceRedisEndpoint *endpoint)
{
  if (endpoint == NULL)
    return;
  g_free (endpoint->host);
  g_free (endpoint->path);
  g_free (endpoint->password);
  g_free (endpoint);
}

static struct timeval
timeval_from_ms (guint ms)
{
  struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

  return tv;
}

static void
set_context_error (redisContext *c, GError **error)
{
  int code = c->err == REDIS_ERR_EOF                     ? G_IO_ERROR_CONNECTION_CLOSED
             : c->err == REDIS_ERR_IO && errno == EAGAIN ? G_IO_ERROR_TIMED_OUT
                                                         : G_IO_ERROR_FAILED;

  g_set_error (error, G_IO_ERROR, code, _ ("Redis connection: %s"),
               c->errstr[0] != '\0' ? c->errstr : g_strerror (errno));
}

redisContext *
sluice_redis_connect (const SluiceRedisEndpoint *endpoint, guint timeout_ms, GError **error)
{
  struct timeval tv = timeval_from_ms (timeout_ms);
  redisContext *c = endpoint->path != NULL
                        ? redisConnectUnixWithTimeout (endpoint->path, tv)
                        : redisConnectWithTimeout (endpoint->host, endpoint->port, tv);
  SluiceRedisArgs args;
  redisReply *reply;

  if (c == NULL || c->err != 0)
    {
      g_autofree char *address = endpoint->path != NULL
                                     ? g_strdup (endpoint->path)
                                     : g_strdup_printf ("%s:%d", endpoint->host, endpoint->port);

      g_set_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED,
                   _ ("Could not connect to Redis at %s: %s"), address,
                   c != NULL ? c->errstr : g_strerror (ENOMEM));
      if (c != NULL)
        redisFree (c);
      return NULL;
    }
  redisSetTimeout (c, tv);

  if (endpoint->password != NULL)
    {
      GError *local = NULL;

      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "AUTH");
      sluice_redis_args_add (&args, endpoint->password);
      reply = sluice_redis_command (c, &args, &local);
      if (reply == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                       _ ("Redis refused the password: %s"), local->message);
          g_error_free (local);
          redisFree (c);
          return NULL;
        }
      freeReplyObject (reply);
    }
  if (endpoint->db != 0)
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "SELECT");
      sluice_redis_args_add_printf (&args, "%d", endpoint->db);
      reply = sluice_redis_command (c, &args, error);
      if (reply == NULL)
        {
          redisFree (c);
          return NULL;
        }
      freeReplyObject (reply);
    }
  return c;
}

void
sluice_redis_entry_id_parse (const char *id, guint64 *ms, guint64 *seq)
{
  char *end;

  *ms = g_ascii_strtoull (id, &end, 10);
  *seq = *end == '-' ? g_ascii_strtoull (end + 1, NULL, 10) : 0;
}

gboolean
sluice_redis_max_bulk (redisContext *c, guint64 *max_bulk, GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply;
  GError *local = NULL;

  *max_bulk = 0;
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "CONFIG");
  sluice_redis_args_add (&args, "GET");
  sluice_redis_args_add (&args, "proto-max-bulk-len");
  reply = sluice_redis_command (c, &args, &local);
  if (reply == NULL)
    {
      if (!sluice_redis_connected (c))
        {
          g_propagate_error (error, local);
          return FALSE;
        }
      g_error_free (local);
      return TRUE;
    }
  /* [name, value] */
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
      reply->element[1]->type == REDIS_REPLY_STRING)
    *max_bulk = g_ascii_strtoull (reply->element[1]->str, NULL, 10);
  freeReplyObject (reply);
  return TRUE;
}

gboolean
sluice_redis_connected (redisContext *c)
{
  return c != NULL && c->err == 0;
}

gboolean
sluice_redis_error_is_transient (const GError *error)
{
  const char *const transient[] = { "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN" };

  for (guint i = 0; i < G_N_ELEMENTS (transient); i++)
    if (strstr (error->message, transient[i]) != NULL)
      return TRUE;
  return FALSE;
}

#define RECONNECT_FIRST_MS 50
#define RECONNECT_MAX_MS 1000
#define RECONNECT_CHECK_MS 10

redisContext *
sluice_redis_reconnect (const SluiceRedisEndpoint *endpoint,
                        guint timeout_ms,
                        gint64 deadline,
                        SluiceRedisStopFunc stop,
                        gpointer stop_data,
                        GError **error)
{
  guint backoff_ms = RECONNECT_FIRST_MS;

  for (;;)
    {
      GError *local = NULL;
      redisContext *c = sluice_redis_connect (endpoint, timeout_ms, &local);
      gint64 wake;

      if (c != NULL)
        return c;
      wake = g_get_monotonic_time () + backoff_ms * G_TIME_SPAN_MILLISECOND;
      if (deadline > 0 && wake > deadline)
        {
          g_propagate_error (error, local);
          return NULL;
        }
      g_error_free (local);
      while (g_get_monotonic_time () < wake)
        {
          if (stop (stop_data))
            {
              g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                   _ ("Stopped while reconnecting to Redis"));
              return NULL;
            }
          g_usleep (RECONNECT_CHECK_MS * 1000);
        }
      backoff_ms = MIN (backoff_ms * 2, RECONNECT_MAX_MS);
    }
}

void
sluice_redis_args_init (SluiceRedisArgs *args)
{
  args->argv = g_ptr_array_new_with_free_func (g_free);
  args->lens = g_array_new (FALSE, FALSE, sizeof (size_t));
}

void
sluice_redis_args_clear (SluiceRedisArgs *args)
{
  g_clear_pointer (&args->argv, g_ptr_array_unref);
  g_clear_pointer (&args->lens, g_array_unref);
}

void
sluice_redis_args_add_len (SluiceRedisArgs *args, const void *data, gsize len)
{
  size_t l = len;
  char *copy = g_malloc (len + 1);

  if (len > 0)
    memcpy (copy, data, len);
  copy[len] = '\0';
  g_ptr_array_add (args->argv, copy);
  g_array_append_val (args->lens, l);
}

void
sluice_redis_args_add (SluiceRedisArgs *args, const char *s)
{
  sluice_redis_args_add_len (args, s, strlen (s));
}

void
sluice_redis_args_add_printf (SluiceRedisArgs *args, const char *format, ...)
{
  va_list ap;
  char *s;
  size_t l;

  va_start (ap, format);
  s = g_strdup_vprintf (format, ap);
  va_end (ap);
  l = strlen (s);
  g_ptr_array_add (args->argv, s);
  g_array_append_val (args->lens, l);
}

gboolean
sluice_redis_args_append (SluiceRedisArgs *args, redisContext *c, GError **error)
{
  int status = redisAppendCommandArgv (c, (int) args->argv->len, (const char **) args->argv->pdata,
                                       (const size_t *) (gpointer) args->lens->data);

  sluice_redis_args_clear (args);
  if (status != REDIS_OK)
    {
      set_context_error (c, error);
      return FALSE;
    }
  return TRUE;
}

/* hiredis writes with write (): to a connection the server closed, that
 * raises SIGPIPE, which a library must not let kill its process. It is
 * blocked in this thread while hiredis writes, and one raised is taken
 * before it is unblocked. */
static int
get_reply_without_sigpipe (redisContext *c, void **reply)
{
  sigset_t pipe_set, old_set, pending;
  struct timespec zero = { 0, 0 };
  int status;

  /* Nothing to write (a reply of a pipeline whose commands went with the
   * first): no SIGPIPE, and two system calls fewer. */
  if (c->obuf == NULL || sdslen (c->obuf) == 0)
    return redisGetReply (c, reply);
  sigemptyset (&pipe_set);
  sigaddset (&pipe_set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &pipe_set, &old_set);
  status = redisGetReply (c, reply);
  if (status != REDIS_OK && sigpending (&pending) == 0 && sigismember (&pending, SIGPIPE) &&
      !sigismember (&old_set, SIGPIPE))
    sigtimedwait (&pipe_set, NULL, &zero);
  pthread_sigmask (SIG_SETMASK, &old_set, NULL);
  return status;
}

/* An error reply is Redis refusing the command: @error says why, and the
 * reply is freed. */
static gboolean
reply_refused (void *reply, GError **error)
{
  if (((redisReply *) reply)->type != REDIS_REPLY_ERROR)
    return FALSE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _ ("Redis: %s"), ((redisReply *) reply)->str);
  freeReplyObject (reply);
  return TRUE;
}

redisReply *
sluice_redis_get_reply (redisContext *c, GError **error)
{
  void *reply = NULL;

  if (get_reply_without_sigpipe (c, &reply) != REDIS_OK || reply == NULL)
    {
      set_context_error (c, error);
      return NULL;
    }
  if (reply_refused (reply, error))
    return NULL;
  return reply;
}

void
sluice_redis_set_nonblocking (redisContext *c, gboolean nonblocking)
{
  int flags = fcntl (c->fd, F_GETFL);

  if (flags != -1)
    fcntl (c->fd, F_SETFL, nonblocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
  /* hiredis takes EAGAIN for "later" only without REDIS_BLOCK. */
  if (nonblocking)
    c->flags &= ~REDIS_BLOCK;
  else
    c->flags |= REDIS_BLOCK;
}

void
sluice_redis_wake_locked (int wake_fd, gboolean polling, gboolean *woken)
{
  guint64 one = 1;

  if (!polling || *woken)
    return;
  *woken = TRUE;
  if (write (wake_fd, &one, sizeof one) < 0)
    g_warning ("Could not wake the Redis I/O thread: %s", g_strerror (errno));
}

void
sluice_redis_poll (struct pollfd *fds,
                   guint n_fds,
                   gint64 until,
                   GMutex *mutex,
                   gboolean *polling,
                   gboolean *woken)
{
  gint64 now = g_get_monotonic_time ();

  if (poll (fds, n_fds, (int) MAX (0, (until - now + 999) / 1000)) < 0 && errno != EINTR)
    g_warning ("poll: %s", g_strerror (errno));
  g_mutex_lock (mutex);
  *polling = FALSE;
  if (*woken || fds[0].revents != 0)
    {
      guint64 count;

      *woken = FALSE;
      if (read (fds[0].fd, &count, sizeof count) < 0 && errno != EAGAIN)
        g_warning ("Could not read the wake-ups of the Redis I/O thread: %s", g_strerror (errno));
    }
  g_mutex_unlock (mutex);
}

gboolean
sluice_redis_has_output (redisContext *c)
{
  return c->obuf != NULL && sdslen (c->obuf) > 0;
}

gboolean
sluice_redis_flush (redisContext *c, GError **error)
{
  int done = 0;

  if (!sluice_redis_has_output (c))
    return TRUE;
  if (redisBufferWrite (c, &done) != REDIS_OK)
    {
      set_context_error (c, error);
      return FALSE;
    }
  return TRUE;
}

/* Reads of hiredis's 16 KiB in one sluice_redis_read_some () at most. */
#define MAX_READS 64

gboolean
sluice_redis_read_some (redisContext *c, GError **error)
{
  for (guint i = 0; i < MAX_READS; i++)
    {
      size_t before = c->reader->len;

      if (redisBufferRead (c) != REDIS_OK)
        {
          set_context_error (c, error);
          return FALSE;
        }
      /* Nothing more for now (EAGAIN). */
      if (c->reader->len == before)
        break;
    }
  return TRUE;
}

SluiceRedisTake
sluice_redis_take_reply (redisContext *c, redisReply **reply, GError **error)
{
  void *taken = NULL;

  *reply = NULL;
  if (redisGetReplyFromReader (c, &taken) != REDIS_OK)
    {
      set_context_error (c, error);
      return SLUICE_REDIS_TAKE_BROKEN;
    }
  if (taken == NULL)
    return SLUICE_REDIS_TAKE_NONE;
  if (reply_refused (taken, error))
    return SLUICE_REDIS_TAKE_REFUSED;
  *reply = taken;
  return SLUICE_REDIS_TAKE_REPLY;
}

redisReply *
sluice_redis_command (redisContext *c, SluiceRedisArgs *args, GError **error)
{
  if (!sluice_redis_args_append (args, c, error))
    return NULL;
  return sluice_redis_get_reply (c, error);
}

void
sluice_redis_args_init_xread (SluiceRedisArgs *args,
                              const char *stream,
                              const char *last_id,
                              guint block_ms)
{
  sluice_redis_args_init (args);
  sluice_redis_args_add (args, "XREAD");
  sluice_redis_args_add (args, "COUNT");
  sluice_redis_args_add_printf (args, "%d", SLUICE_REDIS_XREAD_COUNT);
  sluice_redis_args_add (args, "BLOCK");
  sluice_redis_args_add_printf (args, "%u", block_ms);
  sluice_redis_args_add (args, "STREAMS");
  sluice_redis_args_add (args, stream);
  sluice_redis_args_add (args, last_id);
}

redisReply *
sluice_redis_xread_entries (redisReply *reply)
{
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1 ||
      reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements != 2 ||
      reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
    return NULL;
  return reply->element[0]->element[1];
}

char *
sluice_redis_calls_stream (const char *series)
{
  if (series == NULL || series[0] == '\0')
    return g_strdup (SLUICE_REDIS_CALLS_PREFIX);
  return g_strconcat (SLUICE_REDIS_CALLS_PREFIX ":", series, NULL);
}

char *
sluice_redis_reply_stream (const char *call_id)
{
  const char *colon = strrchr (call_id, ':');

  if (colon == NULL || colon == call_id)
    return NULL;
  return g_strdup_printf ("%s%.*s", SLUICE_REDIS_REPLIES_PREFIX, (int) (colon - call_id), call_id);
}

GHashTable *
sluice_redis_entry_fields (redisReply *entry)
{
  GHashTable *fields;
  redisReply *kv;

  if (entry == NULL || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
      entry->element[0]->type != REDIS_REPLY_STRING)
    return NULL;
  kv = entry->element[1];
  if (kv->type != REDIS_REPLY_ARRAY || kv->elements % 2 != 0)
    return NULL;
  fields = g_hash_table_new (g_str_hash, g_str_equal);
  for (size_t i = 0; i + 1 < kv->elements; i += 2)
    if (kv->element[i]->type == REDIS_REPLY_STRING &&
        kv->element[i + 1]->type == REDIS_REPLY_STRING)
      g_hash_table_insert (fields, kv->element[i]->str, kv->element[i + 1]);
  return fields;
}

const char *
sluice_redis_field (GHashTable *fields, const char *name, gsize *len)
{
  redisReply *value = g_hash_table_lookup (fields, name);

  if (len != NULL)
    *len = value != NULL ? value->len : 0;
  return value != NULL ? value->str : NULL;
}

GVariant *
sluice_redis_value_to_wire (GVariant *value)
{
  return G_BYTE_ORDER == G_LITTLE_ENDIAN ? g_variant_ref (value) : g_variant_byteswap (value);
}

void
sluice_redis_args_add_value (SluiceRedisArgs *args,
                             const char *type_field,
                             const char *value_field,
                             GVariant *value)
{
  GVariant *wire = sluice_redis_value_to_wire (value);

  sluice_redis_args_add (args, type_field);
  sluice_redis_args_add (args, g_variant_get_type_string (wire));
  sluice_redis_args_add (args, value_field);
  sluice_redis_args_add_len (args, g_variant_get_data (wire), g_variant_get_size (wire));
  g_variant_unref (wire);
}

void
sluice_redis_args_init_batch (SluiceRedisArgs *args,
                              const char *stream,
                              gboolean nomkstream,
                              const char *name_field,
                              const char *name,
                              GVariant *batch)
{
  GVariant *wire = sluice_redis_value_to_wire (batch);

  sluice_redis_args_init (args);
  sluice_redis_args_add (args, "XADD");
  sluice_redis_args_add (args, stream);
  if (nomkstream)
    sluice_redis_args_add (args, "NOMKSTREAM");
  sluice_redis_args_add (args, "*");
  sluice_redis_args_add (args, "v");
  sluice_redis_args_add (args, SLUICE_REDIS_PROTOCOL);
  sluice_redis_args_add (args, name_field);
  sluice_redis_args_add (args, name);
  sluice_redis_args_add (args, "b");
  sluice_redis_args_add_len (args, g_variant_get_data (wire), g_variant_get_size (wire));
  g_variant_unref (wire);
}

GVariant *
sluice_redis_value_new (const char *type, const void *data, gsize len, GError **error)
{
  GBytes *bytes;
  GVariant *value;

  if (!g_variant_type_string_is_valid (type) ||
      !g_variant_type_is_definite ((const GVariantType *) type))
    {
      g_set_error (error, SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                   _ ("Malformed stream entry: “%s” is not a definite type"), type);
      return NULL;
    }
  /* Untrusted data is safe: GVariant reads non-normal forms as defaults.
   * Checked once here (linear; it marks the value trusted when it is in
   * normal form, as a peer writes it), so that taking the calls or
   * answers of a batch one by one does not check the offsets of the
   * elements before each again (GLib 2.74 does: quadratic in the batch). */
  bytes = g_bytes_new (data, len);
  value = g_variant_new_from_bytes ((const GVariantType *) type, bytes, FALSE);
  g_bytes_unref (bytes);
  g_variant_is_normal_form (value);
  if (G_BYTE_ORDER != G_LITTLE_ENDIAN)
    {
      GVariant *swapped = g_variant_byteswap (value);

      g_variant_unref (g_variant_ref_sink (value));
      value = swapped;
    }
  return g_variant_ref_sink (value);
}

void
sluice_redis_tuple_members (GVariant *tuple, guint first, guint n, GVariant **members)
{
  for (guint i = 0; i < n; i++)
    members[i] = g_variant_get_child_value (tuple, first + i);
}

void
sluice_redis_members_clear (GVariant **members, guint n)
{
  for (guint i = 0; i < n; i++)
    g_variant_unref (members[i]);
}

GVariant *
sluice_redis_wire_to_value (const char *type, redisReply *data)
{
  if (data == NULL || data->type != REDIS_REPLY_STRING)
    return NULL;
  return sluice_redis_value_new (type, data->str, data->len, NULL);
}

GVariant *
sluice_redis_fields_get_value (GHashTable *fields,
                               const char *type_field,
                               const char *value_field,
                               GError **error)
{
  const char *type = sluice_redis_field (fields, type_field, NULL);
  gsize len;
  const char *data = sluice_redis_field (fields, value_field, &len);

  if (type == NULL || data == NULL)
    {
      g_set_error (error, SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                   _ ("Malformed stream entry: no “%s” or “%s” field"), type_field, value_field);
      return NULL;
    }
  return sluice_redis_value_new (type, data, len, error);
}

void
sluice_redis_args_add_error (SluiceRedisArgs *args, const GError *error, gboolean version1)
{
  sluice_redis_args_add (args, version1 ? "domain" : "e");
  sluice_redis_args_add (args, g_quark_to_string (error->domain));
  sluice_redis_args_add (args, version1 ? "code" : "c");
  sluice_redis_args_add_printf (args, "%d", error->code);
  sluice_redis_args_add (args, version1 ? "message" : "m");
  sluice_redis_args_add (args, error->message);
}

GError *
sluice_redis_fields_get_error (GHashTable *fields)
{
  const char *domain = sluice_redis_field (fields, "e", NULL);
  const char *code = sluice_redis_field (fields, "c", NULL);
  const char *message = sluice_redis_field (fields, "m", NULL);

  if (domain == NULL || code == NULL || domain[0] == '\0')
    return g_error_new (SLUICE_ERROR, SLUICE_ERROR_FAILED,
                        _ ("Malformed reply: neither a value nor an error"));
  return g_error_new_literal (g_quark_from_string (domain), (int) g_ascii_strtoll (code, NULL, 10),
                              message != NULL ? message : "");
}
