/* socket-fan-in.c: lines from many connections, to one writer (doc/examples.md)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Shows a fan-in with flow control: a GSocketService on 127.0.0.1 accepts 4
 * connections, reads their lines asynchronously on the main loop (no thread
 * per connection), and makes each line an item; ONE blocking consumer
 * thread writes them out, in the order they were read. When the producer's
 * window is full the server stops reading (it parks the line it holds and
 * resumes on notify::ready), so the clients' writes block in TCP instead of
 * the server's memory growing: at most WINDOW lines are live, plus one held
 * line per connection. The clients are 4 threads of this program with a
 * GSocketClient each.
 *
 * The test suite runs it with --self-test (tests/meson.build): with a slow
 * writer, it checks that every line of every client arrives exactly once,
 * in each client's order, in the very order the server read them, that no
 * more than the window's lines were live and that reading was paused; it
 * exits 0 only if all holds. doc/examples.md shows the code between the
 * [name] markers.
 *
 * Usage: socket-fan-in [N_LINES_PER_CLIENT]
 *        socket-fan-in --self-test
 */

#include <sluice/sluice.h>

#include <stdio.h>
#include <string.h>

#define N_CLIENTS 4
#define WINDOW 64
#define DEFAULT_N_LINES 1000
#define TEST_N_LINES 2000
#define TEST_WRITER_DELAY_US 50

/* ---- the writer: the blocking consumer ---- */

/* [writer] */
typedef struct
{
  GPtrArray *lines; /* with --self-test: the lines (GBytes), instead of printing them */
  gulong delay_us;  /* a slow writer, to show the window at work */
} Writer;

/* The consumer: runs in a thread of its own and may block. */
static gpointer
write_lines (SluiceConsumerator *lines, gpointer user_data, GError **error)
{
  Writer *writer = user_data;
  gpointer item;

  while (sluice_consumerator_next (lines, &item, error))
    {
      GBytes *line = item; /* ours now */
      gsize size;
      const char *data = g_bytes_get_data (line, &size);

      if (writer->delay_us > 0)
        g_usleep (writer->delay_us);
      if (writer->lines != NULL)
        g_ptr_array_add (writer->lines, line);
      else
        {
          g_print ("%.*s\n", (int) size, data);
          g_bytes_unref (line);
        }
    }
  if (*error != NULL)
    return NULL;
  return writer;
}
/* [/writer] */

/* ---- the server: one reader per connection, on the main context ---- */

typedef struct
{
  SluiceOrderedItemProducer *producer;
  GCancellable *cancellable; /* cancels every read when the stream is over */
  GQueue parked;             /* readers waiting for the producer to be ready */
  guint n_finished;          /* connections read to the end (or given up) */
  guint n_connect_failed;    /* clients that never connected */
  guint max_live;            /* the most live items seen */
  guint max_parked;          /* the most lines held back at once */
  guint n_pauses;            /* how often a reader stopped for the window */
  GPtrArray *read_order;     /* with --self-test: every line, in read order */
  GError *error;             /* the first read error */
  gboolean stopping;
  gboolean done;
} FanIn;

typedef struct
{
  FanIn *fan_in;
  GSocketConnection *connection;
  GDataInputStream *input;
  GBytes *line; /* a line read and not yet produced: held while not ready */
} Reader;

static void reader_pump (Reader *reader);

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  FanIn *fan_in = user_data;

  sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result,
                                            fan_in->error == NULL ? &fan_in->error : NULL);
  fan_in->done = TRUE;
}

/* Every client read to the end, or never connected: no more items. */
static void
fan_in_check_done (FanIn *fan_in)
{
  if (fan_in->stopping || fan_in->n_finished + fan_in->n_connect_failed < N_CLIENTS)
    return;
  fan_in->stopping = TRUE;
  sluice_ordered_item_producer_stop_async (fan_in->producer, NULL, on_stopped, fan_in);
}

static void
reader_finish (Reader *reader)
{
  FanIn *fan_in = reader->fan_in;

  /* Closing makes a client still writing fail instead of block. */
  g_io_stream_close (G_IO_STREAM (reader->connection), NULL, NULL);
  g_clear_pointer (&reader->line, g_bytes_unref);
  g_object_unref (reader->input);
  g_object_unref (reader->connection);
  g_free (reader);
  fan_in->n_finished++;
  fan_in_check_done (fan_in);
}

/* [produce] */
/* The item function: the line is there already, so it completes the slot
 * at once. The producer frees the line with its destroy notify. */
static void
complete_with_line (SluiceSlot *slot, gpointer user_data)
{
  sluice_slot_complete (slot, g_bytes_ref (user_data));
}

static void
line_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Reader *reader = user_data;
  GError *error = NULL;
  gsize length;
  char *line;

  line =
      g_data_input_stream_read_line_finish (G_DATA_INPUT_STREAM (source), result, &length, &error);
  if (line == NULL)
    {
      /* The end of the connection, or an error (a cancelled read: the
       * stream was over already). */
      if (error != NULL && reader->fan_in->error == NULL &&
          !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_propagate_error (&reader->fan_in->error, error);
      else
        g_clear_error (&error);
      reader_finish (reader);
      return;
    }
  reader->line = g_bytes_new_take (line, length);
  reader_pump (reader);
}

/* Produces the line the reader holds, if the producer is ready, and reads
 * the next one; otherwise parks the reader until the producer is ready. */
static void
reader_pump (Reader *reader)
{
  FanIn *fan_in = reader->fan_in;
  SluiceConsumerator *consumerator =
      sluice_ordered_item_producer_get_consumerator (fan_in->producer);

  if (sluice_ordered_item_producer_is_closed (fan_in->producer))
    {
      reader_finish (reader); /* the writer failed or the stream stopped */
      return;
    }
  if (!sluice_ordered_item_producer_is_ready (fan_in->producer))
    {
      /* The window is full: stop reading this connection. The client's
       * writes block once the socket buffers are full. */
      g_queue_push_tail (&fan_in->parked, reader);
      fan_in->max_parked = MAX (fan_in->max_parked, fan_in->parked.length);
      fan_in->n_pauses++;
      return;
    }
  if (fan_in->read_order != NULL)
    g_ptr_array_add (fan_in->read_order, g_bytes_ref (reader->line));
  sluice_ordered_item_producer_produce_item (fan_in->producer, complete_with_line,
                                             g_steal_pointer (&reader->line),
                                             (GDestroyNotify) g_bytes_unref, NULL, NULL, NULL);
  fan_in->max_live = MAX (fan_in->max_live, sluice_consumerator_get_n_items (consumerator));

  g_data_input_stream_read_line_async (reader->input, G_PRIORITY_DEFAULT, fan_in->cancellable,
                                       line_read, reader);
}

/* notify::ready and notify::closed, on the owner context: resumes the
 * parked readers (a closed producer is ready too: they finish). */
static void
producer_changed (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  FanIn *fan_in = user_data;
  GQueue parked;

  if (!sluice_ordered_item_producer_is_ready (fan_in->producer))
    return;
  /* A reader may park again at once: pump a list of our own. */
  parked = fan_in->parked;
  g_queue_init (&fan_in->parked);
  while (!g_queue_is_empty (&parked))
    reader_pump (g_queue_pop_head (&parked));
}
/* [/produce] */

/* [incoming] */
/* A new connection: a reader of its lines. */
static gboolean
on_incoming (GSocketService *service,
             GSocketConnection *connection,
             GObject *source_object,
             gpointer user_data)
{
  FanIn *fan_in = user_data;
  Reader *reader = g_new0 (Reader, 1);

  reader->fan_in = fan_in;
  reader->connection = g_object_ref (connection);
  reader->input = g_data_input_stream_new (g_io_stream_get_input_stream (G_IO_STREAM (connection)));
  g_data_input_stream_set_newline_type (reader->input, G_DATA_STREAM_NEWLINE_TYPE_LF);
  g_data_input_stream_read_line_async (reader->input, G_PRIORITY_DEFAULT, fan_in->cancellable,
                                       line_read, reader);
  return TRUE;
}
/* [/incoming] */

/* ---- the clients: threads, each with a blocking connection ---- */

typedef struct
{
  guint id;
  guint16 port;
  guint n_lines;
  FanIn *fan_in;
  GError *error;
} Client;

static gboolean
client_could_not_connect (gpointer user_data)
{
  Client *client = user_data;
  FanIn *fan_in = client->fan_in;

  fan_in->n_connect_failed++;
  fan_in_check_done (fan_in);
  return G_SOURCE_REMOVE;
}

static gpointer
client_thread (gpointer user_data)
{
  Client *client = user_data;
  g_autoptr (GSocketClient) socket_client = g_socket_client_new ();
  g_autoptr (GSocketConnection) connection = NULL;
  GOutputStream *out;

  connection = g_socket_client_connect_to_host (socket_client, "127.0.0.1", client->port, NULL,
                                                &client->error);
  if (connection == NULL)
    {
      /* No reader will ever see this client: tell the server. */
      g_idle_add (client_could_not_connect, client);
      return NULL;
    }
  out = g_io_stream_get_output_stream (G_IO_STREAM (connection));
  for (guint n = 0; n < client->n_lines; n++)
    {
      g_autofree char *line = g_strdup_printf ("client %u line %u\n", client->id, n);

      /* Blocks while the server does not read: TCP's flow control. */
      if (!g_output_stream_write_all (out, line, strlen (line), NULL, NULL, &client->error))
        break;
    }
  if (client->error == NULL)
    g_io_stream_close (G_IO_STREAM (connection), NULL, &client->error);
  return NULL;
}

/* Runs the server and N_CLIENTS clients of @n_lines lines each; the writer
 * prints the lines, or collects them in @lines. */
static gboolean
fan_in_run (guint n_lines, gulong delay_us, GPtrArray *lines, FanIn *fan_in, GError **error)
{
  g_autoptr (GSocketService) service = g_socket_service_new ();
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  Writer writer = { lines, delay_us };
  Client clients[N_CLIENTS];
  GThread *threads[N_CLIENTS];
  gboolean ok = TRUE;

  /* [listen] */
  /* Port 0: the system picks a free one; the listener says which. */
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (service), address, G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_TCP, NULL, &bound, error))
    return FALSE;

  fan_in->producer =
      sluice_ordered_item_producer_new (NULL, WINDOW, (GDestroyNotify) g_bytes_unref);
  fan_in->cancellable = g_cancellable_new ();
  g_signal_connect (fan_in->producer, "notify::ready", G_CALLBACK (producer_changed), fan_in);
  g_signal_connect (fan_in->producer, "notify::closed", G_CALLBACK (producer_changed), fan_in);
  sluice_ordered_item_producer_start (fan_in->producer, write_lines, &writer, NULL, NULL);

  g_signal_connect (service, "incoming", G_CALLBACK (on_incoming), fan_in);
  g_socket_service_start (service);
  /* [/listen] */

  for (guint i = 0; i < N_CLIENTS; i++)
    {
      clients[i] = (Client){ i, g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)),
                             n_lines, fan_in, NULL };
      threads[i] = g_thread_new ("client", client_thread, &clients[i]);
    }

  while (!fan_in->done)
    g_main_context_iteration (NULL, TRUE);

  g_cancellable_cancel (fan_in->cancellable);
  g_socket_service_stop (service);
  g_socket_listener_close (G_SOCKET_LISTENER (service));
  for (guint i = 0; i < N_CLIENTS; i++)
    {
      g_thread_join (threads[i]);
      if (clients[i].error != NULL)
        {
          if (ok && fan_in->error == NULL)
            g_propagate_prefixed_error (error, clients[i].error, "client %u: ", i);
          else
            g_error_free (clients[i].error);
          ok = FALSE;
        }
    }
  /* Idles of clients that could not connect, if any are left. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_clear_object (&fan_in->cancellable);
  g_clear_object (&fan_in->producer);

  if (fan_in->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&fan_in->error));
      return FALSE;
    }
  return ok;
}

static int
self_test (void)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr (GPtrArray) read_order =
      g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr (GError) error = NULL;
  FanIn fan_in = { 0 };
  guint next[N_CLIENTS] = { 0 };
  guint n_wrong = 0;

  fan_in.read_order = read_order;
  if (!fan_in_run (TEST_N_LINES, TEST_WRITER_DELAY_US, lines, &fan_in, &error))
    {
      g_printerr ("socket-fan-in: %s\n", error->message);
      return 1;
    }

  /* Each client's lines, exactly once and in its order. */
  for (guint i = 0; i < lines->len; i++)
    {
      gsize size;
      const char *data = g_bytes_get_data (lines->pdata[i], &size);
      g_autofree char *line = g_strndup (data, size);
      guint client = G_MAXUINT, n = 0;

      if (sscanf (line, "client %u line %u", &client, &n) != 2 || client >= N_CLIENTS ||
          n != next[client])
        {
          g_printerr ("socket-fan-in: line %u is \"%s\", expected line %u of that client\n", i + 1,
                      line, client < N_CLIENTS ? next[client] : 0);
          n_wrong++;
          break;
        }
      next[client]++;
    }
  for (guint client = 0; client < N_CLIENTS; client++)
    if (next[client] != TEST_N_LINES)
      {
        g_printerr ("socket-fan-in: %u lines of client %u arrived, of %u\n", next[client], client,
                    TEST_N_LINES);
        n_wrong++;
      }

  /* In the order the server read them. */
  if (lines->len != read_order->len)
    {
      g_printerr ("socket-fan-in: %u lines written, %u read\n", lines->len, read_order->len);
      n_wrong++;
    }
  for (guint i = 0; i < lines->len && i < read_order->len; i++)
    if (!g_bytes_equal (lines->pdata[i], read_order->pdata[i]))
      {
        g_printerr ("socket-fan-in: line %u is not the %u-th line read\n", i + 1, i + 1);
        n_wrong++;
        break;
      }

  /* Within the window, and the window was reached: reading paused. */
  if (fan_in.max_live == 0 || fan_in.max_live > WINDOW)
    {
      g_printerr ("socket-fan-in: %u lines were live at once, window %u\n", fan_in.max_live,
                  WINDOW);
      n_wrong++;
    }
  if (fan_in.n_pauses == 0 || fan_in.max_parked > N_CLIENTS)
    {
      g_printerr ("socket-fan-in: reading paused %u times, %u lines held at most\n",
                  fan_in.n_pauses, fan_in.max_parked);
      n_wrong++;
    }

  if (n_wrong > 0)
    return 1;
  g_print ("%u lines from %u clients, in read order; at most %u of %u live, "
           "reading paused %u times\n",
           lines->len, N_CLIENTS, fan_in.max_live, WINDOW, fan_in.n_pauses);
  return 0;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  FanIn fan_in = { 0 };
  guint64 n_lines = DEFAULT_N_LINES;

  if (argc == 2 && strcmp (argv[1], "--self-test") == 0)
    return self_test ();
  if (argc > 2 ||
      (argc == 2 && !g_ascii_string_to_unsigned (argv[1], 10, 1, G_MAXINT, &n_lines, NULL)))
    {
      g_printerr ("usage: socket-fan-in [N_LINES_PER_CLIENT | --self-test]\n");
      return 2;
    }

  if (!fan_in_run (n_lines, 0, NULL, &fan_in, &error))
    {
      g_printerr ("socket-fan-in: %s\n", error->message);
      return 1;
    }
  g_printerr ("socket-fan-in: at most %u of %u lines live, reading paused %u times\n",
              fan_in.max_live, WINDOW, fan_in.n_pauses);
  return 0;
}
