// cuDNN's fused flash attention through the backend graph API. One describes attention as a
// graph of primitive operations, and cuDNN's fused-attention engines recognise that pattern and
// run it as one flash-attention kernel. (cuDNN 9.13 added a single SDPA forward operation and
// 9.17 its backward; the pattern runs on every cuDNN 9, the device's 9.14 included.) The graphs
// below are that pattern, as cuDNN's documentation and its frontend library lay it out:
//
//   forward   S = matmul(Q, K^T) * scale            (MATMUL, POINTWISE MUL by a by-value scalar)
//             causal: row = GEN_INDEX(S, axis 2), col = GEN_INDEX(S, axis 3),
//                     S = BINARY_SELECT(row >= col ? S : lowest)          (CMP_GE, BINARY_SELECT)
//             M = max_j S, E = exp(S - M), L = sum_j E                  (REDUCTION MAX, SUB, EXP, ADD)
//             lse = M + log L                                          (LOG, ADD: the stats output)
//             O = matmul(E / L, V)                                     (DIV, MATMUL)
//   backward  D = rowsum(dO * O) * 1                                   (MUL, REDUCTION ADD, MUL)
//             S as above; P = exp(S - lse)                             (SUB, EXP)
//             dV = matmul(P^T, dO)                                     (RESHAPE to P^T, MATMUL)
//             dS = (matmul(dO, V^T) - D) * P * scale                   (MATMUL, SUB, MUL, MUL)
//             dK = matmul(dS^T, Q)                                     (RESHAPE, MATMUL)
//             dQ = identity(matmul(dS, K))                             (RESHAPE K^T to K, MATMUL, IDENTITY)
//
// K (and in the backward V) enters the graph transposed, as a [B, H, D, T] tensor whose strides
// are K's with the last two swapped: no data moves. Intermediates are virtual (never stored) and
// fp32, except the probabilities that feed a matmul, which are in the inputs' dtype as the
// engines require. Two backward intermediates are real fp32 tensors in our workspace: D
// ([B, H, T]) and the dQ accumulator ([B, H, T, D], summed over key tiles before the IDENTITY
// rounds it into dQ); cuDNN zeroes the accumulator itself from 9.6 on, and before that we do.
// The masked value is float's lowest rather than -inf, as cuDNN's frontend uses: exp(lowest -
// max) is 0 all the same, and no -inf - -inf can make a NaN.
//
// A graph is finalized once per problem (shape, dtype, causal, device, strides): the heuristics
// (mode A) rank engine configurations, and the first that finalizes into an execution plan is
// kept in a cache that is never freed. A call then costs a variant pack (the data pointers, the
// by-value scalars, the workspace) and one cudnnBackendExecute on the caller's stream.
#include "kernels/cudnn_attention/cudnn_attention.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "framework/cuda/check.h"
#include "framework/error.h"
#include "kernels/cudnn_attention/cudnn_backend.h"

namespace ft::kernels {
namespace {

using cudnn::Descriptor;

// The engines' loads and stores are 16-byte vectors: every operand is declared 16-byte aligned
// (and checked to be, with the strides that keep its rows on 16 bytes: fused_attention_takes).
constexpr int64_t kAlignment = 16;
// Pieces of the backward's workspace start on this boundary.
constexpr size_t kWorkspaceAlignment = 256;
// From this release cuDNN zeroes the backward's dQ accumulator itself (its frontend's rule).
constexpr size_t kZeroesDqAccumulatorFrom = 90600;

// Tensor ids of the variant pack. Virtual tensors are numbered from kFirstVirtual on.
enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kOut,
  kLse,
  kDOut,
  kDQ,
  kDK,
  kDV,
  kScale,          // by value: the softmax scale
  kLowest,         // by value: what masked scores become
  kOne,            // by value: 1, the dropout-scale slot of the backward's pattern
  kSoftmaxSum,     // workspace: D = rowsum(dO * O)
  kDqAccumulator,  // workspace: dQ in fp32
  kFirstVirtual = 100,
};

struct Layout {
  std::vector<int64_t> dims, strides;
};

Layout operand(const AttentionShape& s, const AttentionStrides& t) {
  return {{s.batch, s.heads, s.seq_len, s.head_dim}, {t.batch, t.heads, t.seq, t.dim}};
}
// The operand as [B, H, D, T]: K^T (or V^T) in K's (V's) own memory.
Layout transposed(const AttentionShape& s, const AttentionStrides& t) {
  return {{s.batch, s.heads, s.head_dim, s.seq_len}, {t.batch, t.heads, t.dim, t.seq}};
}
Layout packed(const AttentionShape& s) { return operand(s, packed_attention_strides(s)); }
Layout scores(const AttentionShape& s) {
  const int64_t t = s.seq_len;
  return {{s.batch, s.heads, t, t}, {s.heads * t * t, t * t, t, 1}};
}
// The scores' memory read as [B, H, keys, queries].
Layout scores_transposed(const AttentionShape& s) {
  const int64_t t = s.seq_len;
  return {{s.batch, s.heads, t, t}, {s.heads * t * t, t * t, 1, t}};
}
// One value per query row: lse and D.
Layout rows(const AttentionShape& s) {
  return {{s.batch, s.heads, s.seq_len, 1}, {s.heads * s.seq_len, s.seq_len, 1, 1}};
}

cudnnDataType_t cudnn_dtype(DType dtype) { return dtype == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF; }

// An operation graph under construction. It owns every descriptor it makes, and the plan made
// from it keeps it alive: cuDNN's descriptors refer to each other.
class Graph {
 public:
  cudnnBackendDescriptor_t tensor(int64_t uid, cudnnDataType_t type, const Layout& layout, bool is_virtual = false) {
    Descriptor& t = keep(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, type)
        .set_ints(CUDNN_ATTR_TENSOR_DIMENSIONS, layout.dims)
        .set_ints(CUDNN_ATTR_TENSOR_STRIDES, layout.strides)
        .set_int(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
        .set_int(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, kAlignment)
        .set_bool(CUDNN_ATTR_TENSOR_IS_VIRTUAL, is_virtual)
        .finalize();
    return t.get();
  }
  cudnnBackendDescriptor_t virtual_tensor(cudnnDataType_t type, const Layout& layout) {
    return tensor(next_uid_++, type, layout, true);
  }
  // An fp32 scalar passed by value in the variant pack (a host pointer).
  cudnnBackendDescriptor_t scalar(int64_t uid) {
    Descriptor& t = keep(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_DATA_FLOAT)
        .set_ints(CUDNN_ATTR_TENSOR_DIMENSIONS, {1, 1, 1, 1})
        .set_ints(CUDNN_ATTR_TENSOR_STRIDES, {1, 1, 1, 1})
        .set_int(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
        .set_int(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, kAlignment)
        .set_bool(CUDNN_ATTR_TENSOR_IS_BY_VALUE, true)
        .finalize();
    return t.get();
  }

  // c = a b over the last two dims, batched over the first two; fp32 accumulation.
  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    Descriptor& product = keep(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    product.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
    add(keep(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR)
            .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
            .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
            .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
            .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_DESC, product.get()));
  }
  void unary(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    pointwise(mode, CUDNN_DATA_FLOAT, x, nullptr, nullptr, y);
  }
  void binary(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
              cudnnBackendDescriptor_t y, cudnnDataType_t math = CUDNN_DATA_FLOAT) {
    pointwise(mode, math, x, b, nullptr, y);
  }
  // y = t ? x : b
  void select(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
              cudnnBackendDescriptor_t y) {
    pointwise(CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, x, b, t, y);
  }
  // y = each element's index along `axis` of x's shape (int32).
  void index(cudnnBackendDescriptor_t x, int64_t axis, cudnnBackendDescriptor_t y) {
    pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, x, nullptr, nullptr, y, axis);
  }
  // y = x reduced over the dims where y has size 1.
  void reduction(cudnnReduceTensorOp_t op, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    Descriptor& reduce = keep(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    reduce.set(CUDNN_ATTR_REDUCTION_OPERATOR, op).set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
    add(keep(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR)
            .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
            .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
            .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_DESC, reduce.get()));
  }
  // y views x's memory with y's own dims and strides (a transpose here).
  void reshape(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    add(keep(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR)
            .set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x)
            .set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y));
  }

  // The finalized operation graph of everything added.
  cudnnBackendDescriptor_t finalize(cudnnHandle_t handle) {
    Descriptor& graph = keep(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set_descriptors(CUDNN_ATTR_OPERATIONGRAPH_OPS, operations_)
        .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, handle)
        .finalize();
    return graph.get();
  }

  Descriptor& keep(cudnnBackendDescriptorType_t type) {
    kept_.push_back(std::make_unique<Descriptor>(type));
    return *kept_.back();
  }

 private:
  void pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t math, cudnnBackendDescriptor_t x,
                 cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t, cudnnBackendDescriptor_t y,
                 int64_t axis = -1) {
    Descriptor& op = keep(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    op.set(CUDNN_ATTR_POINTWISE_MODE, mode).set(CUDNN_ATTR_POINTWISE_MATH_PREC, math);
    if (axis >= 0) op.set_int(CUDNN_ATTR_POINTWISE_AXIS, axis);
    op.finalize();
    Descriptor& node = keep(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    node.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, op.get())
        .set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) node.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
    if (t) node.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t);
    node.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    add(node);
  }
  void add(Descriptor& operation) {
    operation.finalize();
    operations_.push_back(operation.get());
  }

  std::vector<std::unique_ptr<Descriptor>> kept_;
  std::vector<cudnnBackendDescriptor_t> operations_;
  int64_t next_uid_ = kFirstVirtual;
};

// What both graphs start from: Q, K^T and the scaled, masked scores.
struct Scores {
  cudnnBackendDescriptor_t q, k_transposed, scale, scores;
};

Scores add_scores(Graph& g, const CudnnAttentionForward& p) {
  const AttentionShape& s = p.shape;
  const cudnnDataType_t io = cudnn_dtype(p.dtype);
  Scores r{g.tensor(kQ, io, operand(s, p.q)), g.tensor(kK, io, transposed(s, p.k)), g.scalar(kScale), nullptr};
  const cudnnBackendDescriptor_t products = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.matmul(r.q, r.k_transposed, products);
  r.scores = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.binary(CUDNN_POINTWISE_MUL, products, r.scale, r.scores);
  if (!p.causal) return r;
  const cudnnBackendDescriptor_t row = g.virtual_tensor(CUDNN_DATA_INT32, scores(s));
  const cudnnBackendDescriptor_t column = g.virtual_tensor(CUDNN_DATA_INT32, scores(s));
  const cudnnBackendDescriptor_t visible = g.virtual_tensor(CUDNN_DATA_BOOLEAN, scores(s));
  const cudnnBackendDescriptor_t masked = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  g.index(r.scores, 2, row);
  g.index(r.scores, 3, column);
  g.binary(CUDNN_POINTWISE_CMP_GE, row, column, visible, CUDNN_DATA_BOOLEAN);
  g.select(r.scores, g.scalar(kLowest), visible, masked);
  r.scores = masked;
  return r;
}

void build_forward(Graph& g, const CudnnAttentionForward& p) {
  const AttentionShape& s = p.shape;
  const cudnnDataType_t io = cudnn_dtype(p.dtype);
  const Scores sc = add_scores(g, p);
  const cudnnBackendDescriptor_t row_max = g.virtual_tensor(CUDNN_DATA_FLOAT, rows(s));
  const cudnnBackendDescriptor_t shifted = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  const cudnnBackendDescriptor_t exps = g.virtual_tensor(CUDNN_DATA_FLOAT, scores(s));
  const cudnnBackendDescriptor_t row_sum = g.virtual_tensor(CUDNN_DATA_FLOAT, rows(s));
  const cudnnBackendDescriptor_t log_sum = g.virtual_tensor(CUDNN_DATA_FLOAT, rows(s));
  const cudnnBackendDescriptor_t probs = g.virtual_tensor(io, scores(s));
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, sc.scores, row_max);
  g.binary(CUDNN_POINTWISE_SUB, sc.scores, row_max, shifted);
  g.unary(CUDNN_POINTWISE_EXP, shifted, exps);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, exps, row_sum);
  g.unary(CUDNN_POINTWISE_LOG, row_sum, log_sum);
  g.binary(CUDNN_POINTWISE_ADD, row_max, log_sum, g.tensor(kLse, CUDNN_DATA_FLOAT, rows(s)));
  g.binary(CUDNN_POINTWISE_DIV, exps, row_sum, probs);
  g.matmul(probs, g.tensor(kV, io, operand(s, p.v)), g.tensor(kOut, io, operand(s, p.out)));
}

void build_backward(Graph& g, const CudnnAttentionBackward& p) {
  const CudnnAttentionForward& f = p.forward;
  const AttentionShape& s = f.shape;
  const cudnnDataType_t io = cudnn_dtype(f.dtype);
  const auto fp32 = [&](const Layout& layout) { return g.virtual_tensor(CUDNN_DATA_FLOAT, layout); };
  const cudnnBackendDescriptor_t d_out = g.tensor(kDOut, io, operand(s, p.d_out));

  // D = rowsum(dO * O), times the 1 where dropout's scale would go.
  const cudnnBackendDescriptor_t products = fp32(packed(s)), sums = fp32(rows(s));
  const cudnnBackendDescriptor_t softmax_sum = g.tensor(kSoftmaxSum, CUDNN_DATA_FLOAT, rows(s));
  g.binary(CUDNN_POINTWISE_MUL, d_out, g.tensor(kOut, io, operand(s, f.out)), products);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, products, sums);
  g.binary(CUDNN_POINTWISE_MUL, sums, g.scalar(kOne), softmax_sum);

  // P = exp(S - lse), recomputed; dV = P^T dO.
  const Scores sc = add_scores(g, f);
  const cudnnBackendDescriptor_t shifted = fp32(scores(s)), probs = fp32(scores(s));
  const cudnnBackendDescriptor_t probs_t = g.virtual_tensor(io, scores_transposed(s));
  g.binary(CUDNN_POINTWISE_SUB, sc.scores, g.tensor(kLse, CUDNN_DATA_FLOAT, rows(s)), shifted);
  g.unary(CUDNN_POINTWISE_EXP, shifted, probs);
  g.reshape(probs, probs_t);
  g.matmul(probs_t, d_out, g.tensor(kDV, io, operand(s, p.dv)));

  // dS = scale P (dO V^T - D).
  const cudnnBackendDescriptor_t d_probs = fp32(scores(s)), centered = fp32(scores(s));
  const cudnnBackendDescriptor_t unscaled = fp32(scores(s)), d_scores = fp32(scores(s));
  g.matmul(d_out, g.tensor(kV, io, transposed(s, f.v)), d_probs);
  g.binary(CUDNN_POINTWISE_SUB, d_probs, softmax_sum, centered);
  g.binary(CUDNN_POINTWISE_MUL, centered, probs, unscaled);
  g.binary(CUDNN_POINTWISE_MUL, unscaled, sc.scale, d_scores);

  // dK = dS^T Q.
  const cudnnBackendDescriptor_t d_scores_t = g.virtual_tensor(io, scores_transposed(s));
  g.reshape(d_scores, d_scores_t);
  g.matmul(d_scores_t, sc.q, g.tensor(kDK, io, operand(s, p.dk)));

  // dQ = dS K, summed in fp32, then rounded into dq.
  const cudnnBackendDescriptor_t k = fp32(operand(s, f.k));
  const cudnnBackendDescriptor_t accumulator = g.tensor(kDqAccumulator, CUDNN_DATA_FLOAT, packed(s));
  g.reshape(sc.k_transposed, k);
  g.matmul(d_scores, k, accumulator);
  g.unary(CUDNN_POINTWISE_IDENTITY, accumulator, g.tensor(kDQ, io, operand(s, p.dq)));
}

// A finalized execution plan and the graph it was made from.
struct Plan {
  Graph graph;
  std::unique_ptr<Descriptor> plan;
  size_t engine_workspace = 0;
};

// The first engine configuration of the heuristics (mode A) that finalizes into a plan.
void choose_engine(Plan& p, cudnnHandle_t handle, cudnnBackendDescriptor_t graph, const char* what) {
  const cudnn::Api& api = cudnn::api();
  Descriptor& heuristics = p.graph.keep(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  heuristics.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
      .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_HEUR_MODE_A)
      .finalize();
  int64_t count = 0;
  if (const cudnnStatus_t s = api.get_attribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
      s != CUDNN_STATUS_SUCCESS)
    cudnn::throw_error(s, str(what, ": the heuristics' engine count"));
  std::vector<cudnnBackendDescriptor_t> configs;
  for (int64_t i = 0; i < count; ++i) configs.push_back(p.graph.keep(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR).get());
  if (count > 0) {
    if (const cudnnStatus_t s = api.get_attribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count, configs.data());
        s != CUDNN_STATUS_SUCCESS)
      cudnn::throw_error(s, str(what, ": the heuristics' engine configurations"));
  }
  std::string declined;
  for (int64_t i = 0; i < count; ++i) {
    auto plan = std::make_unique<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, handle)
        .set_descriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs[i]);
    const cudnnStatus_t s = plan->try_finalize();
    if (s != CUDNN_STATUS_SUCCESS) {
      char message[512] = {};
      api.get_last_error_string(message, sizeof message);
      if (declined.empty()) declined = str(": the first declined with ", api.get_error_string(s), " ", message);
      continue;
    }
    int64_t workspace = 0, got = 0;
    if (const cudnnStatus_t w = api.get_attribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                  CUDNN_TYPE_INT64, 1, &got, &workspace);
        w != CUDNN_STATUS_SUCCESS)
      cudnn::throw_error(w, str(what, ": the plan's workspace size"));
    p.plan = std::move(plan);
    p.engine_workspace = static_cast<size_t>(workspace);
    return;
  }
  throw Error(str(what, ": no cuDNN ", api.get_version(), " engine runs this attention graph (", count,
                  " configurations from the heuristics", declined, ")"));
}

template <class Build>
std::unique_ptr<Plan> make_plan(int device, const char* what, Build&& build) {
  const cudnnHandle_t handle = cudnn::handle(device);
  auto p = std::make_unique<Plan>();
  build(p->graph);
  choose_engine(*p, handle, p->graph.finalize(handle), what);
  return p;
}

void check_problem(const CudnnAttentionForward& p, const char* what) {
  const AttentionShape& s = p.shape;
  FT_CHECK(p.dtype == DType::bf16 || p.dtype == DType::f16, what, ": dtype ", dtype_name(p.dtype),
           " is not supported (bf16 or f16)");
  FT_CHECK(s.head_dim == 64 || s.head_dim == 128, what, ": head_dim ", s.head_dim, " is not supported (64 or 128)");
  FT_CHECK(s.batch > 0 && s.heads > 0 && s.seq_len > 0, what, ": empty shape [", s.batch, ", ", s.heads, ", ",
           s.seq_len, ", ", s.head_dim, "]");
}

// What both directions check of the forward's operands.
void check_forward_operands(const CudnnAttentionForward& p, const void* q, const void* k, const void* v,
                            const void* out, const float* lse, const char* what) {
  check_problem(p, what);
  check_fused_operand(p.q, q, what, "q");
  check_fused_operand(p.k, k, what, "k");
  check_fused_operand(p.v, v, what, "v");
  check_fused_operand(p.out, out, what, "out");
  FT_CHECK(reinterpret_cast<uintptr_t>(lse) % kAlignment == 0, what, ": lse is not 16-byte aligned");
}

using Key = std::vector<int64_t>;

Key forward_key(const CudnnAttentionForward& p) {
  const AttentionShape& s = p.shape;
  Key key{s.batch, s.heads, s.seq_len, s.head_dim, static_cast<int64_t>(p.dtype), p.causal, p.device};
  for (const AttentionStrides* t : {&p.q, &p.k, &p.v, &p.out}) key.insert(key.end(), {t->batch, t->heads, t->seq});
  return key;
}

Key backward_key(const CudnnAttentionBackward& p) {
  Key key = forward_key(p.forward);
  for (const AttentionStrides* t : {&p.d_out, &p.dq, &p.dk, &p.dv}) key.insert(key.end(), {t->batch, t->heads, t->seq});
  return key;
}

// The plan of a key, built by `build` on first use. Building holds the lock: it is rare (a new
// shape), and two threads meeting the same new shape then build it once.
template <class Build>
const Plan& cached_plan(const Key& key, bool backward, Build&& build) {
  static std::mutex mutex;
  static auto* plans = new std::map<std::pair<bool, Key>, std::unique_ptr<Plan>>();  // never freed
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<Plan>& plan = (*plans)[{backward, key}];
  if (!plan) plan = build();
  return *plan;
}

const Plan& forward_plan(const CudnnAttentionForward& p) {
  return cached_plan(forward_key(p), false, [&] {
    return make_plan(p.device, "cudnn_attention_forward", [&](Graph& g) { build_forward(g, p); });
  });
}

const Plan& backward_plan(const CudnnAttentionBackward& p) {
  return cached_plan(backward_key(p), true, [&] {
    return make_plan(p.forward.device, "cudnn_attention_backward", [&](Graph& g) { build_backward(g, p); });
  });
}

size_t aligned(size_t bytes) { return (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment; }

// The backward's workspace: the engine's, then D, then the dQ accumulator.
struct BackwardWorkspace {
  size_t softmax_sum, dq_accumulator, total;
};

BackwardWorkspace backward_workspace(const Plan& plan, const AttentionShape& s) {
  const size_t rows_bytes = static_cast<size_t>(s.batch * s.heads * s.seq_len) * sizeof(float);
  BackwardWorkspace w{};
  w.softmax_sum = aligned(plan.engine_workspace);
  w.dq_accumulator = w.softmax_sum + aligned(rows_bytes);
  w.total = w.dq_accumulator + rows_bytes * static_cast<size_t>(s.head_dim);
  return w;
}

// The tensors of one execution: their ids, and their device pointers (host pointers for the
// by-value scalars).
struct Bindings {
  std::vector<int64_t> uids;
  std::vector<void*> pointers;
  Bindings& bind(int64_t uid, const void* data) {
    uids.push_back(uid);
    pointers.push_back(const_cast<void*>(data));  // the variant pack takes void*; cuDNN only reads inputs
    return *this;
  }
};

// The by-value scalars, which must live until cudnnBackendExecute returns.
struct Scalars {
  float scale;
  float lowest = std::numeric_limits<float>::lowest();
  float one = 1.0f;
};

void bind_scalars(Bindings& b, Scalars& s, bool causal, bool backward) {
  b.bind(kScale, &s.scale);
  if (causal) b.bind(kLowest, &s.lowest);
  if (backward) b.bind(kOne, &s.one);
}

void execute(const Plan& plan, int device, cudaStream_t stream, const Bindings& bindings, void* workspace,
             const char* what) {
  const cudnn::Api& api = cudnn::api();
  const cudnnHandle_t handle = cudnn::handle(device);
  if (const cudnnStatus_t s = api.set_stream(handle, stream); s != CUDNN_STATUS_SUCCESS)
    cudnn::throw_error(s, str(what, ": cudnnSetStream"));
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set_ints(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, bindings.uids)
      .set_pointers(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, bindings.pointers)
      .set_pointer(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, workspace)
      .finalize();
  if (const cudnnStatus_t s = api.execute(handle, plan.plan->get(), pack.get()); s != CUDNN_STATUS_SUCCESS)
    cudnn::throw_error(s, str(what, ": cudnnBackendExecute"));
}

}  // namespace

size_t cudnn_attention_forward_workspace(const CudnnAttentionForward& p) {
  check_problem(p, "cudnn_attention_forward");
  return forward_plan(p).engine_workspace;
}

size_t cudnn_attention_backward_workspace(const CudnnAttentionBackward& p) {
  check_problem(p.forward, "cudnn_attention_backward");
  return backward_workspace(backward_plan(p), p.forward.shape).total;
}

void cudnn_attention_forward(const CudnnAttentionForward& p, float scale, const void* q, const void* k, const void* v,
                             void* out, float* lse, void* workspace, cudaStream_t stream) {
  const char* what = "cudnn_attention_forward";
  check_forward_operands(p, q, k, v, out, lse, what);
  const Plan& plan = forward_plan(p);
  Scalars scalars{scale};
  Bindings b;
  b.bind(kQ, q).bind(kK, k).bind(kV, v).bind(kOut, out).bind(kLse, lse);
  bind_scalars(b, scalars, p.causal, false);
  execute(plan, p.device, stream, b, workspace, what);
}

void cudnn_attention_backward(const CudnnAttentionBackward& p, float scale, const void* q, const void* k, const void* v,
                              const void* out, const void* d_out, const float* lse, void* dq, void* dk, void* dv,
                              void* workspace, cudaStream_t stream) {
  const char* what = "cudnn_attention_backward";
  const CudnnAttentionForward& f = p.forward;
  check_forward_operands(f, q, k, v, out, lse, what);
  check_fused_operand(p.d_out, d_out, what, "d_out");
  check_fused_operand(p.dq, dq, what, "dq");
  check_fused_operand(p.dk, dk, what, "dk");
  check_fused_operand(p.dv, dv, what, "dv");
  const Plan& plan = backward_plan(p);
  const BackwardWorkspace w = backward_workspace(plan, f.shape);
  char* base = static_cast<char*>(workspace);
  if (cudnn::api().get_version() < kZeroesDqAccumulatorFrom)
    FT_CUDA_CHECK(cudaMemsetAsync(base + w.dq_accumulator, 0, w.total - w.dq_accumulator, stream));
  Scalars scalars{scale};
  Bindings b;
  b.bind(kQ, q).bind(kK, k).bind(kV, v).bind(kOut, out).bind(kDOut, d_out).bind(kLse, lse);
  b.bind(kDQ, dq).bind(kDK, dk).bind(kDV, dv);
  b.bind(kSoftmaxSum, base + w.softmax_sum).bind(kDqAccumulator, base + w.dq_accumulator);
  bind_scalars(b, scalars, f.causal, true);
  execute(plan, f.device, stream, b, plan.engine_workspace > 0 ? workspace : nullptr, what);
}

std::string cudnn_library_version() {
  const cudnn::Api& api = cudnn::api();
  const size_t v = api.get_version();
  return str("cuDNN ", v / 10000, ".", v / 100 % 100, ".", v % 100, " (", api.path, ")");
}

}  // namespace ft::kernels
