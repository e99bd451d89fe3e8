/* sluice.h: the one public header of Sluice
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#define SLUICE_INSIDE
#include <sluice/sluice-version.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-enums.h>
#include <sluice/sluice-error.h>
#include <sluice/sluice-push-producer.h>
#include <sluice/sluice-worker.h>
#include <sluice/sluice-task-queue.h>
#include <sluice/sluice-thread-worker.h>
#include <sluice/sluice-worker-service.h>
#include <sluice/sluice-process-worker.h>
#include <sluice/sluice-consumerator.h>
#include <sluice/sluice-ordered-item-producer.h>
#include <sluice/sluice-cooperator.h>
#include <sluice/sluice-job-queue.h>
#include <sluice/sluice-output-stream-consumer.h>
#include <sluice/sluice-input-stream-producer.h>
#include <sluice/sluice-pipeline.h>
#include <sluice/sluice-redis-worker.h>
#undef SLUICE_INSIDE
