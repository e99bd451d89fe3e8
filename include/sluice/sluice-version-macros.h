/* sluice-version-macros.h: symbol visibility and availability
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <glib.h>

/* Self-contained: the library itself is compiled with SLUICE_COMPILATION and
 * -fvisibility=hidden, so only what is marked here is exported. */
#ifndef _SLUICE_EXTERN
#if defined(_WIN32)
#ifdef SLUICE_COMPILATION
#define _SLUICE_EXTERN __declspec(dllexport) extern
#else
#define _SLUICE_EXTERN __declspec(dllimport) extern
#endif
#else
#define _SLUICE_EXTERN __attribute__ ((visibility ("default"))) extern
#endif
#endif

#define SLUICE_AVAILABLE_IN_ALL _SLUICE_EXTERN
