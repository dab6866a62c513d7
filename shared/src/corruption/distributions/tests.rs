use super::*;
use crate::corruption::schedule::TemperatureSchedule;

const DISTRIBUTION_NAMES: [&str; 6] = [
    "aux",
    "uniform",
    "term-frequency",
    "smoothed-one-hot",
    "unf-soh",
    "tf-soh",
];
const AUGMENTATION_NAMES: [&str; 5] = [
    "temperature",
    "tf-interp",
    "dropout",
    "drop-attention",
    "drop-token",
];

#[test]
fn names_round_trip_and_unknown_names_are_listed() {
    let listed: Vec<&str> = distributions().iter().map(|n| n.name).collect();
    assert_eq!(listed, DISTRIBUTION_NAMES);
    let listed: Vec<&str> = augmentations().iter().map(|n| n.name).collect();
    assert_eq!(listed, AUGMENTATION_NAMES);
    for name in DISTRIBUTION_NAMES {
        assert_eq!(find(name, None).unwrap().distribution().name, name);
    }
    for name in AUGMENTATION_NAMES {
        let d = find("aux", Some(name)).unwrap();
        assert_eq!(d.augmentation().map(|a| a.name), Some(name));
        assert_eq!(d.distribution().name, "aux");
    }
    // aux without --augmentation is temperature (data-spec/epoch.md, "Augmentations").
    let default = find("aux", None).unwrap();
    assert_eq!(default.augmentation().map(|a| a.name), Some("temperature"));
    let err = find("zipf", None).err().unwrap();
    assert!(err.contains("tf-soh") && err.contains("\"zipf\""), "{err}");
    let err = find("aux", Some("mixup")).err().unwrap();
    assert!(
        err.contains("drop-token") && err.contains("\"mixup\""),
        "{err}"
    );
    let err = find("uniform", Some("dropout")).err().unwrap();
    assert!(
        err.contains("--augmentation dropout: expected it with --distribution aux only")
            && err.contains("found --distribution uniform"),
        "{err}"
    );
}

#[test]
fn every_entry_is_listed_once_and_only_augmentations_load_the_model() {
    for (i, a) in REGISTRY.iter().enumerate() {
        for b in &REGISTRY[i + 1..] {
            let key = |d: &dyn Distribution| (d.distribution(), d.augmentation());
            assert_ne!(key(*a), key(*b), "listed twice");
        }
        assert_eq!(
            a.uses().aux_model,
            a.augmentation().is_some(),
            "{}",
            a.flag()
        );
        assert!(!a.distribution().about.is_empty());
    }
}

#[test]
fn what_each_distribution_uses_is_what_data_spec_says() {
    // data-spec/epoch.md: alpha for the SOH family, gamma for the interpolations and every
    // augmentation but temperature, term frequencies for TF, tf-soh and tf-interp, [UNK] for
    // drop-token, the batch size for the two dropouts, tempering for temperature only.
    let uses = |d: &str, a: Option<&str>| find(d, a).unwrap().uses();
    let model_free = |d: &str| uses(d, None);
    let aug = |a: &str| uses("aux", Some(a));
    let yes = |f: fn(&Uses) -> bool, names: &[Uses]| names.iter().all(f);
    let no = |f: fn(&Uses) -> bool, names: &[Uses]| !names.iter().any(f);
    let soh = [
        model_free("smoothed-one-hot"),
        model_free("unf-soh"),
        model_free("tf-soh"),
    ];
    assert!(yes(|u| u.alpha, &soh));
    assert!(no(
        |u| u.alpha,
        &[model_free("uniform"), aug("temperature")]
    ));
    let scheduled = [
        model_free("unf-soh"),
        model_free("tf-soh"),
        aug("tf-interp"),
        aug("dropout"),
        aug("drop-attention"),
        aug("drop-token"),
    ];
    assert!(yes(|u| u.gamma, &scheduled));
    assert!(no(|u| u.temperature, &scheduled));
    assert!(aug("temperature").temperature && !aug("temperature").gamma);
    let tf = [
        model_free("term-frequency"),
        model_free("tf-soh"),
        aug("tf-interp"),
    ];
    assert!(yes(|u| u.term_frequency, &tf));
    assert!(no(
        |u| u.term_frequency,
        &[model_free("unf-soh"), aug("dropout")]
    ));
    assert!(aug("drop-token").unk && !aug("dropout").unk);
    assert!(yes(|u| u.dropout, &[aug("dropout"), aug("drop-attention")]));
    assert!(no(
        |u| u.dropout,
        &[aug("drop-token"), model_free("uniform")]
    ));
}

#[test]
fn a_choice_keeps_and_records_only_what_is_used() {
    let gamma = GammaSchedule::new("poly", 0.8, 0.1, 1.0).unwrap();
    let tempered = || Ok(TemperatureSchedule::new("exp", 2.0, 0.1, 2.0).unwrap());
    let untempered = || -> anyhow::Result<TemperatureSchedule> { panic!("not asked for") };

    let c = Choice::new(find("tf-soh", None).unwrap(), 0.35, gamma, untempered, 2, 4).unwrap();
    assert_eq!((c.alpha, c.temperature), (Some(0.35), 1.0));
    assert!((c.gamma_value() - 0.4).abs() < 1e-15);
    let r = c.replacement(Some("tf".into()), 64);
    assert_eq!((r.distribution.as_str(), r.augmentation), ("tf-soh", None));
    assert_eq!(
        (r.alpha, r.gamma_schedule.unwrap().name.as_str()),
        (Some(0.35), "poly")
    );
    assert_eq!(
        (r.term_frequency_sha256.as_deref(), r.dropout_batch_size),
        (Some("tf"), None)
    );

    let c = Choice::new(find("aux", None).unwrap(), 0.35, gamma, tempered, 1, 10).unwrap();
    assert_eq!((c.alpha, c.gamma, c.schedule.name()), (None, None, "exp"));
    assert!((c.temperature - (1.0 + (-1.0f64).exp())).abs() < 1e-12);
    let r = c.replacement(None, 64);
    assert_eq!(r.augmentation.as_deref(), Some("temperature"));
    assert_eq!((r.gamma, r.dropout_batch_size), (None, None));

    let dropout = find("aux", Some("dropout")).unwrap();
    let c = Choice::new(dropout, 0.35, gamma, untempered, 0, 4).unwrap();
    assert_eq!(c.replacement(None, 64).dropout_batch_size, Some(64));
    assert!(c
        .describe()
        .contains("augmentation dropout, gamma schedule poly"));
}
