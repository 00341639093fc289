/*
** vfs/error.c -- the error channel of the replicating VFS: where the text
** of raft_last_error() comes from.
**
** A VFS cannot set SQLite's error text. The last refusal on a thread is
** kept here (rl_vfs_last_error) and, when it concerns a file, on that main
** file too (rlv_ferr), so a connection can tell which errors are its own:
** ext/ asks rl_vfs_file_error() for the files of a connection. Every error
** takes the next number of one process-wide sequence.
**
** What it must never do: decide anything on the text it keeps (callers
** decide on the code they return); write past its buffers; keep a pointer
** to a file after the file closed (rlv_error_forget).
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local int tl_code;
static _Thread_local char tl_msg[1024];
static _Thread_local uint64_t tl_seq;     /* number of tl_msg */
static _Thread_local const void *tl_file; /* the file it concerns, if open */
static uint64_t err_seq_next;             /* __atomic */

static void set_error_v(int code, const char *fmt, va_list ap)
{
    tl_code = code;
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
}

void rl_vfs_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(code, fmt, ap);
    va_end(ap);
    tl_file = NULL;
    tl_seq = __atomic_add_fetch(&err_seq_next, 1, __ATOMIC_RELAXED);
}

static _Thread_local uint64_t tl_taken; /* orphans up to this are owned */

const char *rl_vfs_orphan_error(uint64_t *seq)
{
    if (tl_file || !tl_seq || tl_seq <= tl_taken) {
        *seq = 0;
        return NULL;
    }
    *seq = tl_seq;
    return tl_msg;
}

void rl_vfs_orphan_taken(uint64_t seq)
{
    if (seq > tl_taken)
        tl_taken = seq;
}

uint64_t rl_vfs_error_number(void)
{
    return __atomic_add_fetch(&err_seq_next, 1, __ATOMIC_RELAXED);
}

uint64_t rl_vfs_error_seq(void)
{
    return __atomic_load_n(&err_seq_next, __ATOMIC_RELAXED);
}

/* An error about file f (a main file, or the WAL of one). */
void rlv_ferr(rl_file *f, int code, const char *fmt, ...)
{
    rl_file *m = f && f->kind != KIND_MAIN ? f->main : f;
    va_list ap;
    va_start(ap, fmt);
    set_error_v(code, fmt, ap);
    va_end(ap);
    tl_seq = __atomic_add_fetch(&err_seq_next, 1, __ATOMIC_RELAXED);
    tl_file = m;
    if (m) {
        sqlite3_free(m->err);
        m->err = sqlite3_mprintf("%s", tl_msg);
        m->err_seq = tl_seq;
    }
}

const char *rl_vfs_file_error(struct sqlite3_file *f, uint64_t *seq)
{
    rl_file *p = rlv_main_file(f);
    *seq = 0;
    if (!p || !p->err_seq || !p->err)
        return NULL;
    *seq = p->err_seq;
    return p->err;
}

const char *rl_vfs_last_error(int *code)
{
    if (code)
        *code = tl_code;
    return tl_msg;
}

void rl_vfs_clear_error(void)
{
    tl_code = 0;
    tl_msg[0] = 0;
}

/* m closes: its last error outlives it on this thread (a failed ATTACH
** closes the file whose refusal explains the failure), as an orphan. */
void rlv_error_forget(rl_file *m)
{
    sqlite3_free(m->err);
    m->err = NULL;
    if (tl_file == m)
        tl_file = NULL;
}
