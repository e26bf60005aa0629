//! `/metrics`: the broker's metric families in Prometheus' text format (OpenMetrics, as
//! `prometheus-client` writes it), under RocketMQ 5's names.

use keel_core::metrics::{MetricFamily, MetricKind, MetricValue};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// OpenMetrics text, what `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The families in Prometheus' text format.
pub fn render(families: Vec<MetricFamily>) -> Result<String, std::fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Families(families)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// A scrape's families, as a `prometheus-client` collector.
#[derive(Debug)]
struct Families(Vec<MetricFamily>);

impl prometheus_client::collector::Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let kind = match family.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for series in &family.series {
                let mut sample = metric.encode_family(&series.labels)?;
                match (&series.value, family.kind) {
                    (MetricValue::Int(value), MetricKind::Counter) => {
                        let value = u64::try_from(*value).unwrap_or(0);
                        sample.encode_counter::<NoLabelSet, _, u64>(&value, None)?;
                    }
                    (MetricValue::Int(value), _) => sample.encode_gauge(value)?,
                    (MetricValue::Histogram { sum, buckets }, _) => {
                        let count = buckets.iter().map(|(_, n)| n).sum();
                        sample.encode_histogram::<NoLabelSet>(*sum, count, buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_as_prometheus_text_with_rocketmqs_names() {
        let mut counter = MetricFamily::new("rocketmq_messages_in", "Messages in.", MetricKind::Counter);
        counter.push(vec![("topic", "T".into()), ("message_type", "Normal".into())], MetricValue::Int(3));
        let mut gauge = MetricFamily::new("rocketmq_consumer_lag_messages", "Lag.", MetricKind::Gauge);
        gauge.push(vec![("consumer_group", "g".into())], MetricValue::Int(-1));
        let mut histogram = MetricFamily::new("rocketmq_rpc_latency", "Latency.", MetricKind::Histogram);
        histogram.push(
            vec![("request_code", "10".into())],
            MetricValue::Histogram { sum: 4.5, buckets: vec![(1.0, 1), (5.0, 2), (f64::MAX, 0)] },
        );
        let text = render(vec![counter, gauge, histogram]).expect("renders");
        for line in [
            "# TYPE rocketmq_messages_in counter",
            "rocketmq_messages_in_total{topic=\"T\",message_type=\"Normal\"} 3",
            "# TYPE rocketmq_consumer_lag_messages gauge",
            "rocketmq_consumer_lag_messages{consumer_group=\"g\"} -1",
            "rocketmq_rpc_latency_sum{request_code=\"10\"} 4.5",
            "rocketmq_rpc_latency_count{request_code=\"10\"} 3",
            "rocketmq_rpc_latency_bucket{le=\"1.0\",request_code=\"10\"} 1",
            "rocketmq_rpc_latency_bucket{le=\"5.0\",request_code=\"10\"} 3",
            "rocketmq_rpc_latency_bucket{le=\"+Inf\",request_code=\"10\"} 3",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }
}
