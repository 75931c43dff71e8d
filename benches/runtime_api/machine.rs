//! The machine the bench runs on, and the one setting it changes while it runs.

use std::fs::{File, OpenOptions};
use std::io::Write as _;

pub(crate) struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// The 1-minute load average: other work on the machine shows up in the numbers.
    pub load_average: String,
}

impl Machine {
    pub(crate) fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or("unknown CPU".to_owned(), |(_, model)| {
                model.trim().to_owned()
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".to_owned(), |release| release.trim().to_owned());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            kernel,
            load_average,
        }
    }
}

const CPU_DMA_LATENCY: &str = "/dev/cpu_dma_latency";

/// Whether idle CPUs may enter sleep states during the run.
///
/// Every invocation crosses between the bench and the function process about four times. When
/// the CPU being woken sleeps in an idle state (on a VM: a halted vCPU the host must reschedule),
/// each crossing costs tens of microseconds, several times the function's own work, and how
/// often that happens depends on what else the machine is doing. Asking the kernel for zero
/// wake-up latency (PM QoS, the way latency benchmarks usually do) keeps the numbers about the
/// function. The request holds while the file stays open and ends with the bench.
pub(crate) enum IdleStates {
    /// The request lasts as long as this file is open.
    Limited {
        _request: File,
    },
    Allowed,
    Unavailable(String),
}

impl IdleStates {
    /// Limits idle states unless `BENCH_ALLOW_CPU_IDLE` is set.
    pub(crate) fn limit() -> Self {
        if std::env::var_os("BENCH_ALLOW_CPU_IDLE").is_some() {
            return Self::Allowed;
        }
        let request = OpenOptions::new()
            .write(true)
            .open(CPU_DMA_LATENCY)
            .and_then(|mut file| {
                file.write_all(&0_i32.to_ne_bytes())?;
                Ok(file)
            });
        match request {
            Ok(file) => Self::Limited { _request: file },
            Err(error) => Self::Unavailable(error.to_string()),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Limited { .. } => format!(
                "kept out of sleep states for the run ({CPU_DMA_LATENCY} = 0; `BENCH_ALLOW_CPU_IDLE=1` to measure without)"
            ),
            Self::Allowed => "allowed to sleep (`BENCH_ALLOW_CPU_IDLE` set)".to_owned(),
            Self::Unavailable(error) => format!(
                "allowed to sleep: cannot write {CPU_DMA_LATENCY} ({error}); cross-process latencies include wake-ups"
            ),
        }
    }
}
