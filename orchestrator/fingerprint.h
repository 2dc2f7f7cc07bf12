/* fingerprint.h: what a job's resume key is made of, as named parts, and why a job reran.
 *
 * A job's key digests its parts, one "label<TAB>digest" line each: the shard's rows, the TTA
 * variant, the model's settings_key, then the files the model depends on: every command
 * argument that names an existing regular file (the worker's own script), every path of the
 * model's `depends_on`, and (by size and modification time, digest.h's stamp) its checkpoint,
 * adapter, tokenizer and the lm-worker binary. resume.c keeps each job's parts beside its
 * record (done/<job>.parts), so that the next run can name the first part that changed.
 *
 * Files are digested by content up to FINGERPRINT_CONTENT_MAX bytes each; larger ones by size
 * and modification time (a checkpoint of many GB is not read on every run). It deliberately
 * does not look inside scripts for the files they open: `depends_on` is for that.
 */
#ifndef ORCH_FINGERPRINT_H
#define ORCH_FINGERPRINT_H

#include "orch.h"

#define FINGERPRINT_CONTENT_MAX ((size_t)64 << 20)   // files up to 64 MiB are digested by content

/* The model-wide parts of model m's job keys (settings and files), as "label\tdigest\n" lines.
 * Labels are file paths (control characters shown as '?') or "model settings". malloc'd. */
char *fingerprint_model(const plan_t *plan, int m);

/* Why a job whose parts are now_parts did not find its record, given the parts recorded by its
 * last successful run (old_parts, NULL when none): "<path> changed", "its input rows changed",
 * "the model's settings changed", ..., written into why (n bytes). Empty when there is no
 * earlier record to compare with. */
void fingerprint_why(const char *old_parts, const char *now_parts, char *why, size_t n);

#endif
