// Row-wise ops over a [rows, n] row-major block: shape-level entry points that split rows across threads
// and call the active ISA's row kernels. Output may alias input.
#pragma once

#include "core/dims.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

void softmax_rows(const float* x, float* y, Index rows, Index n, int threads = 0);

void log_softmax_rows(const float* x, float* y, Index rows, Index n, int threads = 0);

// out[r] = the first index of row r's largest value (NaN entries ignored).
void argmax_rows(const float* x, Index rows, Index n, Index* out, int threads = 0);

// residual may be null; gamma/beta are [n].
void layer_norm_rows(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                     float* y, Index rows, Index n, int threads = 0);

// y = act(x + bias) with bias [n] or null.
void bias_activation_rows(const float* x, const float* bias, Activation act, float* y, Index rows, Index n,
                          int threads = 0);

// y += x over rows × n (the residual add of pre-LN blocks).
void add_rows(const float* x, float* y, Index rows, Index n, int threads = 0);

}  // namespace cpuformer
