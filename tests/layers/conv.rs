//! Convolutions of every kind, pooling, and the reshaping/padding/cropping/upsampling layers.

use crate::support::{assert_close, lw, one_layer, run1, seq, t};
use kerasc::ir::Tolerance;
use serde_json::json;

#[test]
fn conv1d_causal_dilated() {
    let (n, l, c, f, k, d) = (2, 9, 3, 4, 3, 2);
    let w = seq(k * c * f, 0.17);
    let b = seq(f, 0.5);
    let s = one_layer(
        "Conv1D",
        json!({"filters": f, "kernel_size": [k], "strides": [1], "padding": "causal", "dilation_rate": [d], "activation": "linear", "use_bias": true}),
        &[l, c],
        vec![lw("conv1d", "layer", vec![(vec![k, c, f], w.clone()), (vec![f], b.clone())])],
    );
    let x = t(&[n, l, c], 0.31);
    let xv = x.to_f64_vec();
    let mut want = vec![0f64; n * l * f];
    for bi in 0..n {
        for o in 0..l {
            for ff in 0..f {
                let mut acc = b[ff] as f64;
                for kk in 0..k {
                    let i = o as i64 + (kk * d) as i64 - ((k - 1) * d) as i64;
                    if i >= 0 {
                        for cc in 0..c {
                            acc += xv[(bi * l + i as usize) * c + cc] * w[(kk * c + cc) * f + ff] as f64;
                        }
                    }
                }
                want[(bi * l + o) * f + ff] = acc;
            }
        }
    }
    assert_close(&run1(&s, x), &[n, l, f], &want, Tolerance::REDUCTION);
}

#[test]
fn conv3d_strided_valid_with_relu() {
    let (dd, hh, ww, c, f) = (4, 5, 4, 2, 3);
    let k = 2;
    let w = seq(k * k * k * c * f, 0.23);
    let s = one_layer(
        "Conv3D",
        json!({"filters": f, "kernel_size": [k, k, k], "strides": [2, 1, 2], "padding": "valid", "activation": "relu", "use_bias": false}),
        &[dd, hh, ww, c],
        vec![lw("conv3d", "layer", vec![(vec![k, k, k, c, f], w.clone())])],
    );
    let x = t(&[1, dd, hh, ww, c], 0.41);
    let xv = x.to_f64_vec();
    let (od, oh, ow) = ((dd - k) / 2 + 1, hh - k + 1, (ww - k) / 2 + 1);
    let mut want = Vec::new();
    for z in 0..od {
        for y in 0..oh {
            for xx in 0..ow {
                for ff in 0..f {
                    let mut acc = 0f64;
                    for a in 0..k {
                        for b2 in 0..k {
                            for e in 0..k {
                                for cc in 0..c {
                                    let xi = (((z * 2 + a) * hh + y + b2) * ww + xx * 2 + e) * c + cc;
                                    let wi = (((a * k + b2) * k + e) * c + cc) * f + ff;
                                    acc += xv[xi] * w[wi] as f64;
                                }
                            }
                        }
                    }
                    want.push(acc.max(0.0));
                }
            }
        }
    }
    assert_close(&run1(&s, x), &[1, od, oh, ow, f], &want, Tolerance::REDUCTION);
}

#[test]
fn conv2d_transpose_same_stride2() {
    let (h, w_, c, f, k, st) = (3, 4, 2, 3, 3, 2);
    let w = seq(k * k * f * c, 0.19);
    let s = one_layer(
        "Conv2DTranspose",
        json!({"filters": f, "kernel_size": [k, k], "strides": [st, st], "padding": "same", "activation": "linear", "use_bias": false}),
        &[h, w_, c],
        vec![lw("conv2d_transpose", "layer", vec![(vec![k, k, f, c], w.clone())])],
    );
    let x = t(&[1, h, w_, c], 0.37);
    let xv = x.to_f64_vec();
    let (oh, ow) = (h * st, w_ * st);
    // TensorFlow's SAME: the transposed conv is the gradient of a SAME conv from (oh, ow) to (h, w).
    let pad = |inn: usize, out: usize| ((inn - 1) * st + k).saturating_sub(out) / 2;
    let (ph, pw) = (pad(h, oh), pad(w_, ow));
    let mut want = vec![0f64; oh * ow * f];
    for i in 0..h {
        for j in 0..w_ {
            for a in 0..k {
                for b in 0..k {
                    let (oy, ox) = ((i * st + a) as i64 - ph as i64, (j * st + b) as i64 - pw as i64);
                    if oy < 0 || ox < 0 || oy as usize >= oh || ox as usize >= ow {
                        continue;
                    }
                    for ff in 0..f {
                        for cc in 0..c {
                            want[(oy as usize * ow + ox as usize) * f + ff] +=
                                xv[(i * w_ + j) * c + cc] * w[((a * k + b) * f + ff) * c + cc] as f64;
                        }
                    }
                }
            }
        }
    }
    assert_close(&run1(&s, x), &[1, oh, ow, f], &want, Tolerance::REDUCTION);
}

#[test]
fn separable_and_depthwise_conv1d() {
    let (l, c, dm, f, k) = (6, 2, 2, 3, 3);
    let dw = seq(k * c * dm, 0.31);
    let pw = seq(c * dm * f, 0.53);
    let b = seq(f, 0.9);
    let s = one_layer(
        "SeparableConv1D",
        json!({"filters": f, "kernel_size": k, "depth_multiplier": dm, "padding": "same"}),
        &[l, c],
        vec![lw(
            "separable_conv1d",
            "layer",
            vec![(vec![k, c, dm], dw.clone()), (vec![1, c * dm, f], pw.clone()), (vec![f], b.clone())],
        )],
    );
    let x = t(&[1, l, c], 0.44);
    let xv = x.to_f64_vec();
    let mut mid = vec![0f64; l * c * dm];
    for o in 0..l {
        for ch in 0..c {
            for m in 0..dm {
                let mut a = 0.0;
                for kk in 0..k {
                    let i = o as i64 + kk as i64 - 1;
                    if i >= 0 && (i as usize) < l {
                        a += xv[i as usize * c + ch] * dw[(kk * c + ch) * dm + m] as f64;
                    }
                }
                mid[o * c * dm + ch * dm + m] = a;
            }
        }
    }
    let mut want = Vec::new();
    for o in 0..l {
        for ff in 0..f {
            want.push(b[ff] as f64 + (0..c * dm).map(|j| mid[o * c * dm + j] * pw[j * f + ff] as f64).sum::<f64>());
        }
    }
    assert_close(&run1(&s, x.clone()), &[1, l, f], &want, Tolerance::REDUCTION);
    let s = one_layer(
        "DepthwiseConv1D",
        json!({"kernel_size": k, "depth_multiplier": dm, "padding": "same", "use_bias": false}),
        &[l, c],
        vec![lw("depthwise_conv1d", "layer", vec![(vec![k, c, dm], dw.clone())])],
    );
    assert_close(&run1(&s, x), &[1, l, c * dm], &mid, Tolerance::REDUCTION);
}

#[test]
fn pooling_3d_and_global_keepdims() {
    let x = t(&[1, 4, 4, 4, 2], 0.37);
    let v = x.to_f64_vec();
    let at = |z: usize, y: usize, xx: usize, c: usize| v[((z * 4 + y) * 4 + xx) * 2 + c];
    let s = one_layer("AveragePooling3D", json!({"pool_size": [2, 2, 2], "padding": "valid"}), &[4, 4, 4, 2], vec![]);
    let mut want = Vec::new();
    for z in 0..2 {
        for y in 0..2 {
            for xx in 0..2 {
                for c in 0..2 {
                    let mut s = 0.0;
                    for a in 0..2 {
                        for b in 0..2 {
                            for e in 0..2 {
                                s += at(2 * z + a, 2 * y + b, 2 * xx + e, c);
                            }
                        }
                    }
                    want.push(s / 8.0);
                }
            }
        }
    }
    assert_close(&run1(&s, x.clone()), &[1, 2, 2, 2, 2], &want, Tolerance::REDUCTION);
    let s = one_layer("GlobalMaxPooling3D", json!({"keepdims": true}), &[4, 4, 4, 2], vec![]);
    let want: Vec<f64> = (0..2).map(|c| (0..64).map(|p| v[p * 2 + c]).fold(f64::MIN, f64::max)).collect();
    assert_close(&run1(&s, x), &[1, 1, 1, 1, 2], &want, Tolerance::EXACT);
}

#[test]
fn reshaping_padding_cropping_upsampling() {
    let x = t(&[1, 3, 4, 2], 0.7);
    let v = x.to_f64_vec();
    let at = |y: usize, xx: usize, c: usize| v[(y * 4 + xx) * 2 + c];
    let s = one_layer("Cropping2D", json!({"cropping": [[1, 0], [1, 2]]}), &[3, 4, 2], vec![]);
    let want: Vec<f64> = (1..3)
        .flat_map(|y| (1..2).flat_map(move |xx| (0..2).map(move |c| (y, xx, c))))
        .map(|(y, xx, c)| at(y, xx, c))
        .collect();
    assert_close(&run1(&s, x.clone()), &[1, 2, 1, 2], &want, Tolerance::EXACT);
    let s = one_layer("ZeroPadding2D", json!({"padding": [[0, 1], [2, 0]]}), &[3, 4, 2], vec![]);
    let mut want = Vec::new();
    for y in 0..4 {
        for xx in 0..6 {
            for c in 0..2 {
                want.push(if y < 3 && xx >= 2 { at(y, xx - 2, c) } else { 0.0 });
            }
        }
    }
    assert_close(&run1(&s, x.clone()), &[1, 4, 6, 2], &want, Tolerance::EXACT);
    let s = one_layer("UpSampling2D", json!({"size": [2, 1], "interpolation": "nearest"}), &[3, 4, 2], vec![]);
    let want: Vec<f64> = (0..6)
        .flat_map(|y| (0..4).flat_map(move |xx| (0..2).map(move |c| (y / 2, xx, c))))
        .map(|(y, xx, c)| at(y, xx, c))
        .collect();
    assert_close(&run1(&s, x.clone()), &[1, 6, 4, 2], &want, Tolerance::EXACT);
    let s = one_layer("Permute", json!({"dims": [3, 1, 2]}), &[3, 4, 2], vec![]);
    let want: Vec<f64> = (0..2)
        .flat_map(|c| (0..3).flat_map(move |y| (0..4).map(move |xx| (y, xx, c))))
        .map(|(y, xx, c)| at(y, xx, c))
        .collect();
    assert_close(&run1(&s, x.clone()), &[1, 2, 3, 4], &want, Tolerance::EXACT);
    let s = one_layer("Flatten", json!({}), &[3, 4, 2], vec![]);
    assert_close(&run1(&s, x.clone()), &[1, 24], &v, Tolerance::EXACT);
    let s = one_layer("Reshape", json!({"target_shape": [-1, 6]}), &[3, 4, 2], vec![]);
    assert_close(&run1(&s, x), &[1, 4, 6], &v, Tolerance::EXACT);
    let x1 = t(&[2, 3], 0.9);
    let s = one_layer("RepeatVector", json!({"n": 2}), &[3], vec![]);
    let v1 = x1.to_f64_vec();
    let want: Vec<f64> =
        (0..2).flat_map(|b| (0..2).flat_map(move |_| (0..3).map(move |c| b * 3 + c))).map(|i| v1[i]).collect();
    assert_close(&run1(&s, x1), &[2, 2, 3], &want, Tolerance::EXACT);
    let x3 = t(&[1, 2, 2, 2, 1], 0.3);
    let s = one_layer("UpSampling3D", json!({"size": [1, 2, 1]}), &[2, 2, 2, 1], vec![]);
    let v3 = x3.to_f64_vec();
    let want: Vec<f64> = (0..2)
        .flat_map(|z| (0..4).flat_map(move |y| (0..2).map(move |xx| (z * 2 + y / 2) * 2 + xx)))
        .map(|i| v3[i])
        .collect();
    assert_close(&run1(&s, x3), &[1, 2, 4, 2, 1], &want, Tolerance::EXACT);
}
