/* template.c: the text templates that turn a decoded row into one input text.
 *
 * A template is a handful of fixed strings: a prefix, a suffix, and for each of the three parts
 * the strings before and after its text. Keeping templates this small is deliberate: the fixed
 * strings are tokenised on their own (encoder.c), so truncation can cut the parts without
 * ever cutting a label such as "<response_a>: " or a Gemma <start_of_turn> in half. The built-ins
 * and the JSON file format are documented with their exact strings in docs/templates.md.
 *
 * It does not tokenise or truncate; template_render gives the full text for tests and debugging.
 */
#include "rows.h"

#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "exit_codes.h"
#include "json_util.h"

const char *const template_builtin_names[] = {"plain", "gemma-chat", "turns", NULL};

typedef struct {
    const char *name;                             // the built-in's name
    template_mode_t mode;                         // TPL_BLOCKS or TPL_TURNS
    const char *prefix, *suffix;                  // fixed text at the start and end
    const char *before[N_PARTS], *after[N_PARTS]; // fixed text before / after each part's text
    const char *turn_join;                        // TPL_BLOCKS: joins the turns of one part
} builtin_t;

/* Keep these in sync with docs/templates.md, which quotes them byte for byte. */
static const builtin_t builtins[] = {
    {"plain", TPL_BLOCKS, "", "",
     {"<prompt>: ", "<response_a>: ", "<response_b>: "},
     {"\n\n", "\n\n", ""},
     "\n"},
    {"gemma-chat", TPL_BLOCKS, "<start_of_turn>user\n", "",
     {"", "<response_a>: ", "<response_b>: "},
     {"<end_of_turn>\n<start_of_turn>model\n", "\n\n", "<end_of_turn>"},
     "\n"},
    {"turns", TPL_TURNS, "", "",
     {"<prompt>: ", "<response_a>: ", "<response_b>: "},
     {"\n\n", "\n\n", "\n\n"},
     ""},
};

/* Split a part string at its single "{text}". Returns 0, or -1 with err naming the key. */
static int split_part(const char *file, const char *key, const char *s, char **before, char **after,
                      err_t *err) {
    const char *at = strstr(s, "{text}");
    if (!at || strstr(at + 6, "{text}"))
        return err_code(err, EXIT_DATAERR, "%s: \"%s\" must contain \"{text}\" exactly once", file, key);
    size_t n = (size_t)(at - s);
    *before = xmalloc(n + 1);
    memcpy(*before, s, n);
    (*before)[n] = '\0';
    *after = xstrdup(at + 6);
    return 0;
}

/* Fetch an optional string member; a non-string value is an error. */
static int get_str(const char *file, json_t *root, const char *key, const char *dflt, const char **out,
                   err_t *err) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_string(v)) return err_code(err, EXIT_DATAERR, "%s: \"%s\" must be a string", file, key);
    *out = json_string_value(v);
    return 0;
}

/* Load a JSON template file into t (zeroed by the caller). Returns 0, or -1 with err set. */
static int template_load_file(template_t *t, const char *path, err_t *err) {
    static const char *const keys[] = {"mode", "prefix", "suffix", "prompt", "response_a",
                                       "response_b", "turn_join", NULL};
    json_t *root = json_util_load_file(path, err);
    if (!root) {
        if (err) err->code = EXIT_DATAERR;
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        err_code(err, EXIT_DATAERR, "%s: a template file must hold a JSON object", path);
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        int known = 0;
        for (int i = 0; keys[i]; i++) known |= strcmp(k, keys[i]) == 0;
        if (!known) {
            err_code(err, EXIT_DATAERR, "%s: unknown key \"%s\" (known: mode, prefix, suffix, prompt, "
                     "response_a, response_b, turn_join)", path, k);
            goto out;
        }
    }
    const char *mode = NULL, *prefix = NULL, *suffix = NULL, *join = NULL, *part[N_PARTS] = {0};
    if (get_str(path, root, "mode", "blocks", &mode, err) < 0 ||
        get_str(path, root, "prefix", "", &prefix, err) < 0 ||
        get_str(path, root, "suffix", "", &suffix, err) < 0 ||
        get_str(path, root, "turn_join", "\n", &join, err) < 0)
        goto out;
    if (strcmp(mode, "blocks") == 0) t->mode = TPL_BLOCKS;
    else if (strcmp(mode, "turns") == 0) t->mode = TPL_TURNS;
    else {
        err_code(err, EXIT_DATAERR, "%s: \"mode\" must be \"blocks\" or \"turns\", not \"%s\"", path, mode);
        goto out;
    }
    for (int p = 0; p < N_PARTS; p++) {
        if (get_str(path, root, rows_part_names[p], NULL, &part[p], err) < 0) goto out;
        if (!part[p]) {
            err_code(err, EXIT_DATAERR, "%s: missing \"%s\" (a string containing {text})", path,
                     rows_part_names[p]);
            goto out;
        }
    }
    t->name = xstrdup(path);
    t->prefix = xstrdup(prefix);
    t->suffix = xstrdup(suffix);
    t->turn_join = xstrdup(join);
    for (int p = 0; p < N_PARTS; p++)
        if (split_part(path, rows_part_names[p], part[p], &t->before[p], &t->after[p], err) < 0) goto out;
    rc = 0;
out:
    json_decref(root);
    if (rc < 0) template_free(t);
    return rc;
}

int template_load(template_t *t, const char *name, err_t *err) {
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        const builtin_t *b = &builtins[i];
        if (strcmp(name, b->name) != 0) continue;
        t->name = xstrdup(b->name);
        t->mode = b->mode;
        t->prefix = xstrdup(b->prefix);
        t->suffix = xstrdup(b->suffix);
        t->turn_join = xstrdup(b->turn_join);
        for (int p = 0; p < N_PARTS; p++) {
            t->before[p] = xstrdup(b->before[p]);
            t->after[p] = xstrdup(b->after[p]);
        }
        return 0;
    }
    if (access(name, R_OK) != 0)
        return err_code(err, EXIT_USAGE, "--template %s: not a built-in template (plain, gemma-chat, "
                        "turns) and not a readable file", name);
    return template_load_file(t, name, err);
}

void template_free(template_t *t) {
    free(t->name);
    free(t->prefix);
    free(t->suffix);
    free(t->turn_join);
    for (int p = 0; p < N_PARTS; p++) {
        free(t->before[p]);
        free(t->after[p]);
    }
    memset(t, 0, sizeof *t);
}

/* A growable byte buffer for template_render. */
typedef struct {
    char *p;       // (cap) bytes, NUL-terminated after n
    size_t n, cap; // bytes used / allocated
} buf_t;

/* Append s[0..n) to b, keeping it NUL-terminated (aborts on host OOM). */
static void buf_put(buf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Append the NUL-terminated s to b. */
static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

char *template_render(const template_t *t, const row_parts_t *r, size_t *len) {
    buf_t b = {0};
    buf_put(&b, "", 0);
    buf_puts(&b, t->prefix);
    if (t->mode == TPL_BLOCKS) {
        for (int p = 0; p < N_PARTS; p++) {
            const turns_t *tu = &r->part[p];
            buf_puts(&b, t->before[p]);
            for (size_t i = 0; i < tu->n; i++) {
                if (i) buf_puts(&b, t->turn_join);
                buf_put(&b, tu->text[i], tu->len[i]);
            }
            buf_puts(&b, t->after[p]);
        }
    } else {
        size_t n = 1; // at least one turn, so that the labels always appear
        for (int p = 0; p < N_PARTS; p++)
            if (r->part[p].n > n) n = r->part[p].n;
        for (size_t i = 0; i < n; i++) {
            for (int p = 0; p < N_PARTS; p++) {
                const turns_t *tu = &r->part[p];
                buf_puts(&b, t->before[p]);
                if (i < tu->n) buf_put(&b, tu->text[i], tu->len[i]);
                buf_puts(&b, t->after[p]);
            }
        }
    }
    buf_puts(&b, t->suffix);
    *len = b.n;
    return b.p;
}
