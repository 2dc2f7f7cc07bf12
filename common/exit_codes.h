/* exit_codes.h: the worker exit-code contract (docs/workers.md), shared by orchestrate, which
 * interprets it, and lm-worker and the test workers, which follow it. Values follow sysexits.h. */
#ifndef COMMON_EXIT_CODES_H
#define COMMON_EXIT_CODES_H

#define EXIT_OK 0
#define EXIT_USAGE 64     // bad command line; not retried
#define EXIT_DATAERR 65   // bad input (CSV, model files, tokenizer); not retried
#define EXIT_UNAVAILABLE 69 // a resource is missing (no CUDA driver, device or cuBLAS); not retried
#define EXIT_SOFTWARE 70  // internal error; retried
#define EXIT_IOERR 74     // could not read or write a file; retried
#define EXIT_OOM 75       // out of device (or host) memory; retried with the batch halved

#endif
