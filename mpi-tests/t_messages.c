/* Counts the MPI calls kvmesh makes (through the PMPI profiling interface)
 * to show that concatenate sends no message it does not need: none for a
 * decode step or an aligned prefill, point-to-point only for a misaligned
 * prefill, and exactly one allreduce in checked mode; and that an insert
 * sends each moved byte once, and nothing for what a rank holds itself. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static long n_p2p, n_coll, n_sends, n_sent_bytes;

int
MPI_Isend(const void *b, int c, MPI_Datatype t, int d, int g, MPI_Comm m, MPI_Request *r)
{
    int size = 0;

    PMPI_Type_size(t, &size);
    n_p2p++;
    n_sends++;
    n_sent_bytes += (long) size * c;
    return PMPI_Isend(b, c, t, d, g, m, r);
}

int
MPI_Send(const void *b, int c, MPI_Datatype t, int d, int g, MPI_Comm m)
{
    n_p2p++;
    return PMPI_Send(b, c, t, d, g, m);
}

int
MPI_Irecv(void *b, int c, MPI_Datatype t, int s, int g, MPI_Comm m, MPI_Request *r)
{
    n_p2p++;
    return PMPI_Irecv(b, c, t, s, g, m, r);
}

int
MPI_Recv(void *b, int c, MPI_Datatype t, int s, int g, MPI_Comm m, MPI_Status *st)
{
    n_p2p++;
    return PMPI_Recv(b, c, t, s, g, m, st);
}

int
MPI_Allreduce(const void *s, void *r, int c, MPI_Datatype t, MPI_Op o, MPI_Comm m)
{
    n_coll++;
    return PMPI_Allreduce(s, r, c, t, o, m);
}

int
MPI_Barrier(MPI_Comm m)
{
    n_coll++;
    return PMPI_Barrier(m);
}

#define B 4
#define S 16

static kvmesh_cache_t *
make(kvmesh_partition_t *part, bool checked, int64_t window)
{
    kvmesh_meta_params_t mp;
    kvmesh_cache_params_t cp;
    kvmesh_meta_t *meta = NULL;
    kvmesh_cache_t *c = NULL;

    kvmesh_meta_params_init(&mp);
    mp.batch_size = B, mp.sequence_length = S, mp.num_hidden_layers = 1;
    mp.num_heads = 2, mp.head_dim = 4;
    H_OK(kvmesh_meta_create(&mp, &meta));
    kvmesh_cache_params_init(&cp);
    cp.checked = checked;
    kvmesh_mask_detail_t det = { KVMESH_MASK_SLIDING, window, 0 };
    if (window) {
        cp.details = &det;
        cp.max_append = 4;     /* a ring of W + 4 - 1 slots */
    }
    H_OK(kvmesh_cache_init(meta, part, &cp, &c));
    kvmesh_meta_free(&meta);
    return c;
}

/* Appends n tokens and returns this rank's (p2p, collective) call counts. */
static void
append(kvmesh_cache_t *c, kvmesh_mode_t mode, int64_t n, long *p2p, long *coll)
{
    kvmesh_view_t *v;
    kvmesh_block_t blk;
    void *in[2];
    int t;

    for (t = 0; t < 2; t++) {
        H_OK(kvmesh_cache_input_block(c, mode, n, (kvmesh_kv_t) t, &blk));
        in[t] = calloc((size_t) (blk.shape[0] * blk.shape[1] * blk.shape[2] * blk.shape[3]), 2);
    }
    H_OK(kvmesh_cache_view(c, 0, &v));
    n_p2p = n_coll = 0;
    H_OK(kvmesh_view_concatenate(v, mode, n, KVMESH_BF16, in[0], in[1], NULL));
    *p2p = n_p2p, *coll = n_coll;
    free(in[0]);
    free(in[1]);
}

int
main(int argc, char **argv)
{
    kvmesh_mesh_t *mesh = NULL;
    kvmesh_partition_t *part = NULL;
    kvmesh_cache_t *c;
    long p2p, coll, total[2];
    int32_t idx[B] = { 0, 0, 0, 0 };
    char spec[32];
    int sp;

    h_init(&argc, &argv);
    sp = h_size % 2 == 0 ? 2 : 1;
    snprintf(spec, sizeof spec, "sp=%d,fsdp=-1", sp);
    H_OK(kvmesh_mesh_create(MPI_COMM_WORLD, spec, &mesh));
    H_OK(kvmesh_partition_create(mesh, &part));

    c = make(part, false, 0);
    /* the merge communicator of a layer split over sp: one rank per kv
     * block, ranked by block, holding the same rows and heads */
    {
        kvmesh_view_t *v;
        int size = 0, rank = -1, cmp = 0;
        MPI_Comm kc;
        H_OK(kvmesh_cache_view(c, 0, &v));
        kc = kvmesh_view_kv_comm(v);
        H_CHECK(kvmesh_view_whole(v) == (sp == 1), "whole layer");
        if (sp == 1) {
            MPI_Comm_compare(kc, MPI_COMM_SELF, &cmp);
            H_CHECK(cmp == MPI_IDENT, "a whole layer merges over MPI_COMM_SELF");
        } else {
            long key[2];
            MPI_Comm_size(kc, &size);
            MPI_Comm_rank(kc, &rank);
            H_CHECK(size == sp && rank == kvmesh_mesh_coord(mesh, KVMESH_AXIS_SP),
                    "kv comm: size %d rank %d", size, rank);
            /* its members differ only in sp: same fsdp coordinate */
            key[0] = kvmesh_mesh_coord(mesh, KVMESH_AXIS_FSDP);
            key[1] = -key[0];
            MPI_Allreduce(MPI_IN_PLACE, key, 2, MPI_LONG, MPI_MAX, kc);
            H_CHECK(key[0] == -key[1], "kv comm spans other fsdp coordinates");
        }
    }
    /* prefill of the whole length from empty rows: query blocks = kv blocks */
    append(c, KVMESH_MODE_PREFILL, S, &p2p, &coll);
    H_CHECK(p2p == 0 && coll == 0, "aligned prefill n=S: %ld p2p, %ld collective", p2p, coll);
    H_OK(kvmesh_cache_insert_index(c, 0, B, idx));
    /* decode: query length 1 is replicated, nothing moves */
    append(c, KVMESH_MODE_DECODE, 1, &p2p, &coll);
    H_CHECK(p2p == 0 && coll == 0, "decode: %ld p2p, %ld collective calls", p2p, coll);
    /* a chunk that starts at 1 and spans both sp blocks: misaligned */
    append(c, KVMESH_MODE_PREFILL, 2 * sp, &p2p, &coll);
    H_CHECK(coll == 0, "misaligned prefill: %ld collective calls", coll);
    total[0] = p2p;
    MPI_Allreduce(MPI_IN_PLACE, total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    /* rows at 1 get positions 1..4, all in kv block 0 (S / 2 = 8): the
     * query block of the sp-1 rank (positions 3, 4) goes to its sp-0
     * partner, one K and one V message per row, each a send and a receive;
     * the rows are spread over the pairs, so 4 B calls in all */
    if (sp == 2)
        H_CHECK(total[0] == 4L * B, "misaligned prefill: %ld p2p calls in all, want %ld",
                total[0], 4L * B);
    else
        H_CHECK(total[0] == 0, "misaligned prefill without sp: %ld p2p calls", total[0]);
    kvmesh_cache_free(&c);

    /* checked mode: exactly one allreduce, still no point-to-point */
    c = make(part, true, 0);
    append(c, KVMESH_MODE_DECODE, 1, &p2p, &coll);
    H_CHECK(p2p == 0 && coll == 1, "checked decode: %ld p2p, %ld collective", p2p, coll);
    kvmesh_cache_free(&c);

    /* W = 5 and A = 4: a ring of 8 slots (0-3 on sp 0, 4-7 on sp 1): a
     * decode step sends nothing; 4 tokens from 6 land in slots 6, 7, 0, 1,
     * so each sp rank's 2 tokens go to the other: per row and rank a K and
     * a V send and a K and a V receive, 8 B calls in all */
    c = make(part, false, 5);
    {
        int32_t six[B] = { 6, 6, 6, 6 };
        H_OK(kvmesh_cache_insert_index(c, 0, B, six));
    }
    append(c, KVMESH_MODE_DECODE, 1, &p2p, &coll);
    H_CHECK(p2p == 0 && coll == 0, "ring decode: %ld p2p, %ld collective", p2p, coll);
    {
        int32_t six[B] = { 6, 6, 6, 6 };
        H_OK(kvmesh_cache_insert_index(c, 0, B, six));
    }
    append(c, KVMESH_MODE_PREFILL, 4, &p2p, &coll);
    total[0] = p2p;
    MPI_Allreduce(MPI_IN_PLACE, total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    H_CHECK(coll == 0, "ring prefill: %ld collective calls", coll);
    H_CHECK(total[0] == (sp == 2 ? 8L * B : 0L), "ring prefill: %ld p2p calls, want %ld",
            total[0], sp == 2 ? 8L * B : 0L);
    kvmesh_cache_free(&c);

    kvmesh_partition_free(&part);
    kvmesh_mesh_free(&mesh);

    /* insert of a 1-row request on ranks 0-1 (tp=2) into a 4-rank tp=2,sp=2
     * cache: dst rank 0 (tp 0, sp 0) copies from src rank 0 on the same
     * rank; ranks 1 (tp 0, sp 1), 2 (tp 1, sp 0), 3 (tp 1, sp 1) get one
     * message each with their heads (1 of 2, 4 dims, bf16: 8 bytes a
     * position and tensor) of the 10 filled positions in their kv block:
     * 2, 8, 2 positions, K and V: 192 bytes in 3 sends */
    if (h_size == 4) {
        kvmesh_mesh_t *sm = NULL, *dm = NULL;
        kvmesh_partition_t *sp_ = NULL, *dp_ = NULL;
        kvmesh_cache_t *src = NULL, *dst = NULL;
        kvmesh_meta_params_t mp;
        kvmesh_meta_t *meta = NULL;
        MPI_Comm half;
        long sent[2];

        MPI_Comm_split(MPI_COMM_WORLD, h_rank < 2 ? 0 : MPI_UNDEFINED, h_rank, &half);
        kvmesh_meta_params_init(&mp);
        mp.sequence_length = S, mp.num_hidden_layers = 1, mp.num_heads = 2, mp.head_dim = 4;
        mp.batch_size = 1;
        H_OK(kvmesh_meta_create(&mp, &meta));
        if (half != MPI_COMM_NULL) {
            H_OK(kvmesh_mesh_create(half, "tp=2", &sm));
            H_OK(kvmesh_partition_create(sm, &sp_));
            H_OK(kvmesh_cache_init(meta, sp_, NULL, &src));
        }
        kvmesh_meta_free(&meta);
        mp.batch_size = B;
        H_OK(kvmesh_meta_create(&mp, &meta));
        H_OK(kvmesh_mesh_create(MPI_COMM_WORLD, "tp=2,sp=2", &dm));
        H_OK(kvmesh_partition_create(dm, &dp_));
        H_OK(kvmesh_cache_init(meta, dp_, NULL, &dst));
        kvmesh_meta_free(&meta);
        if (src) {
            int32_t ten[1] = { 10 };
            H_OK(kvmesh_cache_insert_index(src, 0, 1, ten));
        }
        n_sends = n_sent_bytes = 0;
        H_OK(kvmesh_cache_insert(dst, src, 2, MPI_COMM_WORLD));
        sent[0] = n_sends, sent[1] = n_sent_bytes;
        H_CHECK(sent[0] == (h_rank == 0 ? 1 : h_rank == 1 ? 2 : 0),
                "insert: rank %d sent %ld messages", h_rank, sent[0]);
        MPI_Allreduce(MPI_IN_PLACE, sent, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        H_CHECK(sent[0] == 3 && sent[1] == 192, "insert: %ld messages, %ld bytes; want 3, 192",
                sent[0], sent[1]);
        H_OK(kvmesh_cache_free(&src));
        H_OK(kvmesh_cache_free(&dst));
        kvmesh_partition_free(&sp_);
        kvmesh_partition_free(&dp_);
        kvmesh_mesh_free(&sm);
        kvmesh_mesh_free(&dm);
        if (half != MPI_COMM_NULL)
            MPI_Comm_free(&half);
    }
    return h_finish("t_messages");
}
