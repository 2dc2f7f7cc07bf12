/* fuzz_csv_rows.c: libFuzzer target for the CSV reading under every output check:
 * csv_table_parse (common/csv_io) on arbitrary bytes, then, on tables it accepts, the
 * validate-style checks (output_table_check against a fixed id set and against the table's
 * own ids), the input checks (input_validate) and shard_assign.
 *
 * Oracles: no crash, leak or UB; a failed check always says why; when the table's own ids
 * pass, every value handed back is a finite probability; shard_assign puts every row in range.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "orch.h"
#include "planning.h"

static plan_t plan;   // labels a,b,tie; one swap_ab model, so input_validate checks columns

static void init_plan(void) {
    static int done;
    if (done) return;
    const char *text = "{\"input\": \"in.csv\", \"output\": \"o.csv\", \"labels\": [\"a\", \"b\", \"tie\"],"
                       " \"models\": [{\"name\": \"m\", \"command\": [\"w\"], \"tta\": [\"swap_ab\"]}]}";
    err_t err = {0};
    ASSERT(plan_load_buf(&plan, text, strlen(text), "fuzz.json", &err) == 0);
    done = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_plan();
    csv_table_t t;
    err_t err = {0};
    if (csv_table_parse(&t, (const char *)data, size, "fuzz.csv", &err) != 0) {
        ASSERT(err.msg[0] != '\0');
        return 0;
    }
    const char *labels[] = {"a", "b", "tie"};
    char *fixed[] = {"1", "2", "3", "a,b"};
    err.msg[0] = '\0';
    if (output_table_check(labels, 3, fixed, 4, &t, "fuzz.csv", NULL, &err) != 0) ASSERT(err.msg[0] != '\0');

    if (t.n_cols >= 1) {
        char **own = malloc((t.n_rows + 1) * sizeof *own);
        for (size_t r = 0; r < t.n_rows; r++) own[r] = t.cells[r * t.n_cols];
        double *vals = malloc((t.n_rows + 1) * 3 * sizeof *vals);
        if (output_table_check(labels, 3, own, t.n_rows, &t, "fuzz.csv", vals, &err) == 0) {
            for (size_t i = 0; i < t.n_rows * 3; i++) ASSERT(isfinite(vals[i]) && vals[i] >= 0 && vals[i] <= 1);
        } else {
            ASSERT(err.msg[0] != '\0');
        }
        free(vals);
        free(own);
    }
    if (input_validate(&plan, &t, &err) != 0) ASSERT(err.msg[0] != '\0');
    if (t.n_rows) {
        int n = 1 + (int)(size % 5);
        int *shard_of = malloc(t.n_rows * sizeof *shard_of);
        shard_assign(&t, n, shard_of);
        for (size_t r = 0; r < t.n_rows; r++) ASSERT(shard_of[r] >= 0 && shard_of[r] < n);
        free(shard_of);
    }
    csv_table_free(&t);
    return 0;
}
