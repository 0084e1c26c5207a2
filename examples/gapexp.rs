use kerasc::ir::Tensor;
use kerasc::*;
use std::time::Instant;
fn spin(us: f64) {
    let t = Instant::now();
    while t.elapsed().as_secs_f64() * 1e6 < us {}
}
fn med(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let m = load(std::path::Path::new(&args[1])).unwrap();
    let b: usize = args[2].parse().unwrap();
    let dev = LogicalDevices::physical().get(Device::CPU).unwrap().clone();
    let opts = ExecutorOptions {
        device: dev,
        naive: false,
        optimize: OptimizeOptions::default(),
        ptx_cache: "/tmp".into(),
        precision: codegen::cuda::Precision::Fp32,
        memory_limit: None,
    };
    let (e, _) = Executor::new(&m.graph, &opts).unwrap();
    let inputs = kerasc::bench::random_inputs(&m.graph, b, 0).unwrap();
    for _ in 0..20 {
        e.run(&inputs).unwrap();
    }
    let mut res: Vec<Vec<f64>> = vec![vec![]; 4];
    for _block in 0..30 {
        for (k, res) in res.iter_mut().enumerate() {
            let mut t = vec![];
            for _ in 0..60 {
                if k == 3 {
                    rayon::spawn(|| {});
                }
                if k >= 1 {
                    spin(3.0);
                }
                let x: Vec<Tensor> = if k >= 2 { inputs.iter().map(|t| t.clone()).collect() } else { vec![] };
                let x = if k >= 2 { &x } else { &inputs };
                let t0 = Instant::now();
                let o = e.run(x).unwrap();
                let dt = t0.elapsed().as_secs_f64() * 1e3;
                drop(o);
                t.push(dt);
            }
            res.push(med(t));
        }
    }
    for (k, r) in res.into_iter().enumerate() {
        let mut r2 = r.clone();
        r2.sort_by(f64::total_cmp);
        println!("variant {k}: median of block medians {:.4}  min {:.4}", med(r), r2[0]);
    }
}
