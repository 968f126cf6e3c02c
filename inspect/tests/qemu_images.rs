//! Real images, made at test time by `qemu-img` (Debian's qemu-utils; these tests fail, they do
//! not skip, without it) and `sgdisk`, fed through the inspector in buffers of 1 byte, 4 KiB,
//! 1 MiB and the whole file. The virtual size must be exactly what `qemu-img info` says, and the
//! verdict must not depend on the buffer size. Hostile images are real ones with a hostile
//! option (backing file, data file) or edited the way an attacker would (descriptor extents
//! pointing at `/etc/passwd`, a protective MBR with a second partition).

use std::path::PathBuf;
use std::process::Command;

use inspect::{Format, Inspector, Refusal, Verdict, check};

/// A temp dir to make images in.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read image")
    }

    fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.path(name), data).expect("write image");
    }

    /// Runs a tool in the dir, failing loudly if it is missing or fails.
    fn run(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .current_dir(self.0.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("{tool} is required by these tests (Debian: qemu-utils, gdisk): {e}")
            });
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `qemu-img create -f fmt [-o opts] name size`, returning the image's bytes.
    fn create(&self, name: &str, fmt: &str, opts: &[&str], size: &str) -> Vec<u8> {
        let mut args = vec!["create", "-q", "-f", fmt];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[name, size]);
        self.run("qemu-img", &args);
        self.read(name)
    }

    /// The virtual size `qemu-img info` reports, probing the format unless `fmt` is given.
    fn virtual_size(&self, name: &str, fmt: Option<&str>) -> u64 {
        let mut args = vec!["info", "--output=json"];
        if let Some(fmt) = fmt {
            args.extend_from_slice(&["-f", fmt]);
        }
        args.push(name);
        let info: serde_json::Value =
            serde_json::from_str(&self.run("qemu-img", &args)).expect("qemu-img json");
        info["virtual-size"].as_u64().expect("virtual-size")
    }
}

/// The verdict for `data`, checked to be the same for every buffer size.
fn inspect(data: &[u8]) -> Verdict {
    let mut verdicts = [1, 4096, 1 << 20, data.len().max(1)].map(|step| {
        let mut inspector = Inspector::new();
        for chunk in data.chunks(step) {
            inspector.feed(chunk);
        }
        (step, inspector.finish())
    });
    let (_, whole) = verdicts[3].clone();
    for (step, v) in &mut verdicts {
        assert_eq!(*v, whole, "buffers of {step} bytes");
    }
    assert_eq!(whole.size, data.len() as u64);
    whole
}

/// Asserts that `data` is `format`, accepted as `claim` with `virtual_size`.
fn assert_accepted(data: &[u8], format: Format, claim: &str, virtual_size: u64) {
    let v = inspect(data);
    assert_eq!((v.format, v.refusal.clone()), (format, None));
    assert_eq!(v.virtual_size, Some(virtual_size));
    assert_eq!(check(&v, claim, true), Ok(Some(virtual_size)));
}

/// Asserts that `data` is `format` and refused for `refusal` whatever the claim.
fn assert_refused(data: &[u8], format: Format, refusal: &Refusal) {
    let v = inspect(data);
    assert_eq!(v.format, format);
    assert_eq!(v.refusal.as_ref(), Some(refusal));
    for claim in [format.inspector_name(), "raw", "ami"] {
        for require_match in [true, false] {
            assert_eq!(check(&v, claim, require_match).as_ref(), Err(refusal));
        }
    }
}

/// Replaces the embedded descriptor of a sparse VMDK (sector 1, `sectors` long).
fn with_descriptor(mut image: Vec<u8>, text: &str, sectors: usize) -> Vec<u8> {
    let region = &mut image[512..512 + 512 * sectors];
    assert!(text.len() < region.len());
    region.fill(0);
    region[..text.len()].copy_from_slice(text.as_bytes());
    image
}

/// The descriptor qemu wrote into a sparse VMDK.
fn descriptor(image: &[u8]) -> String {
    let region = &image[512..512 + 20 * 512];
    let end = region.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(region[..end].to_vec()).unwrap()
}

#[test]
fn qcow2_v2_and_v3_are_accepted_with_their_virtual_size() {
    let d = Dir::new();
    let v3 = d.create("v3.qcow2", "qcow2", &[], "64M");
    assert_accepted(
        &v3,
        Format::Qcow2,
        "qcow2",
        d.virtual_size("v3.qcow2", None),
    );
    let v2 = d.create("v2.qcow2", "qcow2", &["-o", "compat=0.10"], "10G");
    assert_eq!(v2[7], 2, "compat=0.10 writes a version 2 header");
    assert_accepted(
        &v2,
        Format::Qcow2,
        "qcow2",
        d.virtual_size("v2.qcow2", None),
    );
}

#[test]
fn qcow2_with_a_backing_file_is_refused() {
    let d = Dir::new();
    d.create("base.raw", "raw", &[], "1M");
    let overlay = d.create("o.qcow2", "qcow2", &["-b", "base.raw", "-F", "raw"], "1M");
    assert_refused(&overlay, Format::Qcow2, &Refusal::QcowBackingFile);
    let v2 = d.create(
        "o2.qcow2",
        "qcow2",
        &["-o", "compat=0.10", "-b", "/etc/passwd", "-F", "raw"],
        "1M",
    );
    assert_refused(&v2, Format::Qcow2, &Refusal::QcowBackingFile);
}

#[test]
fn qcow2_with_an_external_data_file_is_refused() {
    let d = Dir::new();
    let data_file = d.path("data.raw");
    let opt = format!("data_file={}", data_file.display());
    let image = d.create("df.qcow2", "qcow2", &["-o", &opt], "1M");
    assert_refused(&image, Format::Qcow2, &Refusal::QcowDataFile);
}

#[test]
fn qcow2_with_extended_l2_entries_is_refused_as_glance_does() {
    // Incompatible feature bit 4 is beyond what Glance's inspector knows.
    let d = Dir::new();
    let image = d.create("l2.qcow2", "qcow2", &["-o", "extended_l2=on"], "1M");
    assert_refused(
        &image,
        Format::Qcow2,
        &Refusal::QcowUnknownFeatures { bits: 0x10 },
    );
}

#[test]
fn vmdk_single_file_sparse_subformats_are_accepted() {
    let d = Dir::new();
    for sub in ["monolithicSparse", "streamOptimized"] {
        let name = format!("{sub}.vmdk");
        let opt = format!("subformat={sub}");
        let image = d.create(&name, "vmdk", &["-o", &opt], "64M");
        assert_accepted(&image, Format::Vmdk, "vmdk", d.virtual_size(&name, None));
    }
}

#[test]
fn vmdk_sparse_descriptor_naming_a_host_file_is_refused() {
    let d = Dir::new();
    let image = d.create(
        "s.vmdk",
        "vmdk",
        &["-o", "subformat=monolithicSparse"],
        "1M",
    );
    let text = descriptor(&image).replace("\"s.vmdk\"", "\"/etc/passwd\"");
    let hostile = with_descriptor(image, &text, 20);
    let v = inspect(&hostile);
    assert_eq!(
        v.refusal.as_ref().map(Refusal::reason),
        Some("vmdk_extent_path")
    );
    assert!(check(&v, "vmdk", false).is_err());
}

#[test]
fn vmdk_descriptor_lines_follow_glance() {
    let d = Dir::new();
    let image = d.create(
        "s.vmdk",
        "vmdk",
        &["-o", "subformat=monolithicSparse"],
        "1M",
    );
    let text = descriptor(&image);
    // a line that is not a comment, ddb entry, key=value field or extent
    let junk = with_descriptor(image.clone(), &format!("{text}include other.vmdk\n"), 20);
    assert_refused(
        &junk,
        Format::Vmdk,
        &Refusal::VmdkDescriptorLine {
            line: "include other.vmdk".into(),
        },
    );
    let spaced = with_descriptor(image.clone(), &format!("{text}parent file = x\n"), 20);
    assert_eq!(
        inspect(&spaced).refusal.unwrap().reason(),
        "vmdk_descriptor_line"
    );
    // Glance lets any well-formed key=value field through
    let extra = with_descriptor(image.clone(), &format!("{text}evil=\"1\"\n"), 20);
    assert_accepted(&extra, Format::Vmdk, "vmdk", 1 << 20);
    let none = with_descriptor(image, &text.replace("RW 2048 SPARSE \"s.vmdk\"", ""), 20);
    assert_refused(&none, Format::Vmdk, &Refusal::VmdkNoExtents);
}

#[test]
fn vmdk_flat_descriptor_files_are_refused() {
    let d = Dir::new();
    for sub in [
        "monolithicFlat",
        "twoGbMaxExtentFlat",
        "twoGbMaxExtentSparse",
    ] {
        let name = format!("{sub}.vmdk");
        let opt = format!("subformat={sub}");
        let file = d.create(&name, "vmdk", &["-o", &opt], "1M");
        let text = String::from_utf8(file).expect("a text descriptor");
        let start = text.find("RW ").expect("an extent line");
        let open = start + text[start..].find('"').unwrap();
        let close = open + 1 + text[open + 1..].find('"').unwrap();
        let hostile = format!("{}\"/etc/passwd\"{}", &text[..open], &text[close + 1..]);
        let refusal = Refusal::VmdkSubformat {
            subformat: sub.to_ascii_lowercase(),
        };
        assert_refused(text.as_bytes(), Format::Vmdk, &refusal);
        assert_refused(hostile.as_bytes(), Format::Vmdk, &refusal);
    }
}

#[test]
fn vmdk_bare_descriptor_claiming_sparse_is_refused() {
    // The CVE-2022-47951 shape: a text descriptor that says monolithicSparse and names a host file.
    let d = Dir::new();
    let image = d.create(
        "s.vmdk",
        "vmdk",
        &["-o", "subformat=monolithicSparse"],
        "1M",
    );
    let text = descriptor(&image);
    let hostile = text.replace("\"s.vmdk\"", "\"/etc/passwd\"");
    assert_refused(
        hostile.as_bytes(),
        Format::Vmdk,
        &Refusal::VmdkExtentPath {
            line: "rw 2048 sparse \"/etc/passwd\"".into(),
        },
    );
    // and one naming a file beside the image
    assert_refused(text.as_bytes(), Format::Vmdk, &Refusal::VmdkBareDescriptor);
}

#[test]
fn vhd_dynamic_and_fixed_are_accepted() {
    let d = Dir::new();
    let dynamic = d.create("d.vhd", "vpc", &["-o", "subformat=dynamic"], "64M");
    assert_accepted(&dynamic, Format::Vhd, "vhd", d.virtual_size("d.vhd", None));
    // qemu cannot probe a fixed VHD (it looks raw), so it is asked as vpc
    let fixed = d.create("f.vhd", "vpc", &["-o", "subformat=fixed"], "3M");
    assert_eq!(
        d.virtual_size("f.vhd", None),
        fixed.len() as u64,
        "qemu probes raw"
    );
    assert_accepted(
        &fixed,
        Format::Vhd,
        "vhd",
        d.virtual_size("f.vhd", Some("vpc")),
    );
    // a fixed VHD of a GPT disk is still a VHD
    let mut gpt = d.read("f.vhd");
    let footer = gpt.split_off(gpt.len() - 512);
    d.write("inner.img", &gpt);
    d.run("sgdisk", &["-n", "1:2048:0", "inner.img"]);
    let mut disk = d.read("inner.img");
    disk.extend_from_slice(&footer);
    assert_accepted(
        &disk,
        Format::Vhd,
        "vhd",
        d.virtual_size("f.vhd", Some("vpc")),
    );
}

#[test]
fn vhdx_vdi_and_raw_are_accepted() {
    let d = Dir::new();
    let vhdx = d.create("a.vhdx", "vhdx", &[], "64M");
    assert_accepted(&vhdx, Format::Vhdx, "vhdx", d.virtual_size("a.vhdx", None));
    let vdi = d.create("a.vdi", "vdi", &[], "64M");
    assert_accepted(&vdi, Format::Vdi, "vdi", d.virtual_size("a.vdi", None));
    let mut raw = d.create("a.raw", "raw", &[], "2M");
    raw[1000..1100].fill(0x41);
    assert_accepted(&raw, Format::Raw, "raw", d.virtual_size("a.raw", None));
    assert_eq!(check(&inspect(&raw), "ami", true), Ok(None));
}

#[test]
fn qed_is_refused() {
    let d = Dir::new();
    let image = d.create("a.qed", "qed", &[], "64M");
    assert_refused(&image, Format::Qed, &Refusal::Qed);
}

#[test]
fn luks_v1_is_accepted_and_v2_refused() {
    let d = Dir::new();
    let secret = [
        "--object",
        "secret,id=s0,data=pw",
        "-o",
        "key-secret=s0,iter-time=10",
    ];
    let v1 = d.create("a.luks", "luks", &secret, "1M");
    assert_accepted(&v1, Format::Luks, "luks", 1 << 20);
    // a LUKS2 binary header: magic, version 2, header size; the JSON area is not needed
    let mut v2 = vec![0; 1 << 20];
    v2[..6].copy_from_slice(b"LUKS\xba\xbe");
    v2[6..8].copy_from_slice(&2u16.to_be_bytes());
    v2[8..16].copy_from_slice(&16384u64.to_be_bytes());
    v2[24..30].copy_from_slice(b"glint\0");
    v2[72..78].copy_from_slice(b"sha256");
    assert_refused(&v2, Format::Luks, &Refusal::LuksVersion { version: 2 });
}

#[test]
fn luks_v2_from_cryptsetup_is_refused() {
    let d = Dir::new();
    d.write("a.img", &vec![0; 20 << 20]);
    d.write("key", b"pw");
    let made = Command::new("cryptsetup")
        .args(["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2"])
        .args([
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            "key",
            "a.img",
        ])
        .current_dir(d.0.path())
        .status();
    match made {
        Ok(status) if status.success() => {
            let image = d.read("a.img");
            assert_refused(&image, Format::Luks, &Refusal::LuksVersion { version: 2 });
        }
        other => eprintln!("SKIPPED: cryptsetup cannot make a LUKS2 image here ({other:?})"),
    }
}

/// A minimal ISO 9660 image: a primary volume descriptor at sector 16 and a terminator.
fn iso(blocks: u32) -> Vec<u8> {
    let mut b = vec![0; blocks as usize * 2048];
    let pvd = &mut b[16 * 2048..17 * 2048];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[40..48].copy_from_slice(b"GLINTISO");
    pvd[80..84].copy_from_slice(&blocks.to_le_bytes());
    pvd[84..88].copy_from_slice(&blocks.to_be_bytes());
    pvd[128..130].copy_from_slice(&2048u16.to_le_bytes());
    pvd[130..132].copy_from_slice(&2048u16.to_be_bytes());
    let end = &mut b[17 * 2048..18 * 2048];
    end[0] = 255;
    end[1..6].copy_from_slice(b"CD001");
    end[6] = 1;
    b
}

#[test]
fn iso_and_hybrid_iso_are_accepted_as_iso() {
    let d = Dir::new();
    let image = iso(64);
    assert_accepted(&image, Format::Iso, "iso", 64 * 2048);
    // isohybrid: a GPT in front of the volume descriptors
    d.write("hybrid.iso", &image);
    d.run("sgdisk", &["-n", "1:34:40", "hybrid.iso"]);
    let hybrid = d.read("hybrid.iso");
    assert_eq!(
        &hybrid[32769..32774],
        b"CD001",
        "sgdisk kept the descriptor"
    );
    assert_accepted(&hybrid, Format::Iso, "iso", 64 * 2048);
    let v = inspect(&hybrid);
    assert!(
        check(&v, "gpt", true).is_err(),
        "a hybrid ISO is iso, not gpt"
    );
}

#[test]
fn gpt_disks_are_accepted_and_bad_protective_mbrs_refused() {
    let d = Dir::new();
    d.write("disk.img", &vec![0; 8 << 20]);
    d.run("sgdisk", &["-n", "1:2048:0", "-t", "1:8300", "disk.img"]);
    let disk = d.read("disk.img");
    assert_accepted(&disk, Format::Gpt, "gpt", 8 << 20);
    assert_eq!(check(&inspect(&disk), "raw", true), Ok(Some(8 << 20)));
    assert!(check(&inspect(&disk), "iso", true).is_err());

    let mut lba = disk.clone();
    lba[446 + 8] = 2;
    let mut chs = disk.clone();
    chs[446 + 2] = 1;
    let mut extra = disk.clone();
    extra[446 + 16 + 4] = 0x83;
    extra[446 + 16 + 8] = 63;
    for bad in [lba, chs, extra] {
        let v = inspect(&bad);
        assert_eq!(v.format, Format::Gpt);
        let refusal = v.refusal.clone().expect("refused");
        assert_eq!(refusal.reason(), "gpt_protective_mbr");
        assert!(
            refusal
                .to_string()
                .starts_with("GPT image has an invalid protective MBR")
        );
        assert!(check(&v, "gpt", false).is_err());
        assert!(check(&v, "raw", true).is_err());
    }
    let mut flag = disk;
    flag[446] = 0x01;
    assert_refused(&flag, Format::Gpt, &Refusal::MbrBootFlag { partition: 0 });
}

#[test]
fn an_mbr_disk_is_glance_gpt() {
    let mut disk = vec![0; 4 << 20];
    disk[446] = 0x80;
    disk[446 + 1..446 + 4].copy_from_slice(&[0x20, 0x21, 0x00]);
    disk[446 + 4] = 0x83;
    disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&6144u32.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    assert_accepted(&disk, Format::Mbr, "gpt", 4 << 20);
    assert_eq!(check(&inspect(&disk), "raw", true), Ok(Some(4 << 20)));
    let mut empty = disk;
    empty[446..510].fill(0);
    assert_refused(&empty, Format::Mbr, &Refusal::MbrNoPartitions);
}

#[test]
fn content_that_does_not_match_its_claim_is_refused() {
    let d = Dir::new();
    let qcow2 = inspect(&d.create("a.qcow2", "qcow2", &[], "1M"));
    let raw = inspect(&d.create("a.raw", "raw", &[], "1M"));
    let vhdx = inspect(&d.create("a.vhdx", "vhdx", &[], "1M"));
    let mismatch = |claimed: &str, detected| {
        Err(Refusal::Mismatch {
            claimed: claimed.into(),
            detected,
        })
    };
    assert_eq!(check(&qcow2, "vmdk", true), mismatch("vmdk", "qcow2"));
    assert_eq!(check(&qcow2, "ami", true), mismatch("ami", "qcow2"));
    assert_eq!(check(&raw, "qcow2", true), mismatch("qcow2", "raw"));
    assert_eq!(check(&raw, "iso", true), mismatch("iso", "raw"));
    assert_eq!(check(&vhdx, "vhd", true), mismatch("vhd", "vhdx"));
    // with the option off, Glance accepts mismatches without a virtual size
    assert_eq!(check(&qcow2, "vmdk", false), Ok(None));
    // raw accepts any content, with its byte size
    assert_eq!(check(&qcow2, "raw", true), Ok(Some(qcow2.size)));
    for claim in ["ami", "ari", "aki", "ploop"] {
        assert_eq!(check(&raw, claim, true), Ok(None));
    }
}

#[test]
fn truncated_images_are_format_errors() {
    let d = Dir::new();
    let vhdx = d.create("a.vhdx", "vhdx", &[], "64M");
    let v = inspect(&vhdx[..200 * 1024]);
    let truncated = Refusal::Truncated {
        format: Format::Vhdx,
    };
    assert_eq!(v.refusal.as_ref(), Some(&truncated));
    assert_eq!(check(&v, "vhdx", true), Err(truncated));
    assert_eq!(check(&v, "vhdx", false), Ok(None));
    let vmdk = d.create("a.vmdk", "vmdk", &[], "64M");
    let v = inspect(&vmdk[..2048]);
    assert_eq!(v.refusal.map(|r| r.reason()), Some("truncated"));
}
