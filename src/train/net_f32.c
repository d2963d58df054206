/* The network in float: what `maas train` runs (see net_body.h). */
#include "kernels/kernels.h"
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R float
#define SFX(name) name##_f32
#define GEMM kern_gemm_f32
#define REXP expf
#include "net_body.h"
