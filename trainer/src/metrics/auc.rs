//! ROC AUC of binary scores, exact: the Mann-Whitney statistic. Ranks are taken over all scores
//! with tied scores sharing their average rank, so AUC = (R+ - n+(n+ + 1)/2) / (n+ n-), where R+
//! is the rank sum of the positives: the probability that a random positive scores above a
//! random negative, ties counting one half.

/// The ROC AUC of `scores` (higher = more positive) against `positive`; None when all labels are
/// of one class (the AUC is undefined), when the lengths differ, or when a score is NaN.
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    if scores.len() != positive.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i] as usize];
        let mut j = i;
        while j < order.len() && scores[order[j] as usize] == s {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        let pos_in_tie = order[i..j]
            .iter()
            .filter(|&&k| positive[k as usize])
            .count();
        rank_sum_pos += avg * pos_in_tie as f64;
        i = j;
    }
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

#[cfg(test)]
mod tests {
    use super::roc_auc;

    /// The definition: P(score+ > score-) + P(tie) / 2 over all pairs.
    fn by_pairs(scores: &[f32], positive: &[bool]) -> f64 {
        let (mut sum, mut n) = (0.0, 0.0);
        for (i, &pi) in positive.iter().enumerate() {
            for (j, &pj) in positive.iter().enumerate() {
                if pi && !pj {
                    n += 1.0;
                    sum += match scores[i].partial_cmp(&scores[j]).unwrap() {
                        std::cmp::Ordering::Greater => 1.0,
                        std::cmp::Ordering::Equal => 0.5,
                        std::cmp::Ordering::Less => 0.0,
                    };
                }
            }
        }
        sum / n
    }

    #[test]
    fn hand_computed_values() {
        // Perfect separation, perfectly wrong, and one swapped pair of 2 x 2.
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &y), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &y), Some(0.0));
        assert_eq!(roc_auc(&[0.1, 0.8, 0.2, 0.9], &y), Some(0.75));
    }

    #[test]
    fn ties_count_one_half() {
        // All scores equal: 0.5 whatever the labels.
        assert_eq!(
            roc_auc(&[3.0; 5], &[true, false, false, true, false]),
            Some(0.5)
        );
        // Negatives 0, 1, 1; positives 1, 2: pairs (1>0, 1=1, 1=1, 2>all) = (1 + .5 + .5 + 3) / 6.
        let s = [0.0, 1.0, 1.0, 1.0, 2.0];
        let y = [false, false, false, true, true];
        assert_eq!(roc_auc(&s, &y), Some(5.0 / 6.0));
        assert_eq!(roc_auc(&s, &y), Some(by_pairs(&s, &y)));
    }

    #[test]
    fn agrees_with_the_pairwise_definition() {
        let mut x = 12345u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let n = 200;
        let s: Vec<f32> = (0..n).map(|_| (next() % 20) as f32 / 4.0).collect();
        let y: Vec<bool> = (0..n).map(|_| next() % 3 == 0).collect();
        let a = roc_auc(&s, &y).unwrap();
        assert!((a - by_pairs(&s, &y)).abs() < 1e-12, "{a}");
    }

    #[test]
    fn one_class_is_undefined() {
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(roc_auc(&[], &[]), None);
        assert_eq!(roc_auc(&[f32::NAN, 0.2], &[true, false]), None);
    }
}
