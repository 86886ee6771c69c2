-- Seed data for Kabupaten Sekadau: OPD directory, kecamatan, categories, disposition rules.
--
-- This is editable data, not code: operators change the rows (SQL or the admin console),
-- and a re-run of this file never duplicates a row nor overwrites an operator's edit
-- (every insert is ON CONFLICT DO NOTHING on a natural key; rules on ``seed_key``).
-- Another regency ships its own seed migration instead of this one.
--
-- Deliberately no '*' x '*' rule (the table forbids it) and some categories without any
-- rule (pertanahan, pungutan_liar, lainnya): those complaints go to triage.

INSERT INTO opds (code, name, kind) VALUES
    ('disdikbud',   'Dinas Pendidikan dan Kebudayaan', 'dinas'),
    ('dinkes',      'Dinas Kesehatan', 'dinas'),
    ('dpupr',       'Dinas Pekerjaan Umum dan Penataan Ruang', 'dinas'),
    ('dishub',      'Dinas Perhubungan', 'dinas'),
    ('dlh',         'Dinas Lingkungan Hidup', 'dinas'),
    ('disdukcapil', 'Dinas Kependudukan dan Pencatatan Sipil', 'dinas'),
    ('dinsos',      'Dinas Sosial', 'dinas'),
    ('diskominfo',  'Dinas Komunikasi dan Informatika', 'dinas'),
    ('satpolpp',    'Satuan Polisi Pamong Praja', 'satuan'),
    ('bpbd',        'Badan Penanggulangan Bencana Daerah', 'badan'),
    ('rsud',        'RSUD Sekadau', 'rsud'),
    ('distan',      'Dinas Pertanian', 'dinas'),
    ('disperkim',   'Dinas Perumahan Rakyat dan Kawasan Permukiman', 'dinas'),
    ('dpmptsp',     'Dinas Penanaman Modal dan Pelayanan Terpadu Satu Pintu', 'dinas'),
    ('disnaker',    'Dinas Tenaga Kerja', 'dinas'),
    ('bkpsdm',      'Badan Kepegawaian dan Pengembangan Sumber Daya Manusia', 'badan'),
    ('setda',       'Sekretariat Daerah', 'sekretariat'),
    ('pdam',        'Perumda Air Minum Sekadau', 'bumd'),
    ('kec_belitang',       'Kecamatan Belitang', 'kecamatan'),
    ('kec_belitang_hilir', 'Kecamatan Belitang Hilir', 'kecamatan'),
    ('kec_belitang_hulu',  'Kecamatan Belitang Hulu', 'kecamatan'),
    ('kec_nanga_mahap',    'Kecamatan Nanga Mahap', 'kecamatan'),
    ('kec_nanga_taman',    'Kecamatan Nanga Taman', 'kecamatan'),
    ('kec_sekadau_hilir',  'Kecamatan Sekadau Hilir', 'kecamatan'),
    ('kec_sekadau_hulu',   'Kecamatan Sekadau Hulu', 'kecamatan')
ON CONFLICT (code) DO NOTHING;

INSERT INTO kecamatan (code, name, opd_code) VALUES
    ('belitang',       'Belitang',       'kec_belitang'),
    ('belitang_hilir', 'Belitang Hilir', 'kec_belitang_hilir'),
    ('belitang_hulu',  'Belitang Hulu',  'kec_belitang_hulu'),
    ('nanga_mahap',    'Nanga Mahap',    'kec_nanga_mahap'),
    ('nanga_taman',    'Nanga Taman',    'kec_nanga_taman'),
    ('sekadau_hilir',  'Sekadau Hilir',  'kec_sekadau_hilir'),
    ('sekadau_hulu',   'Sekadau Hulu',   'kec_sekadau_hulu')
ON CONFLICT DO NOTHING;

INSERT INTO categories (code, name, category_group, keywords) VALUES
    ('infrastruktur_jalan', 'Jalan dan Jembatan', 'infrastruktur',
        '{jalan,jembatan,aspal,lubang,rusak,drainase,parit,gorong-gorong}'),
    ('tata_ruang', 'Tata Ruang dan Bangunan', 'infrastruktur',
        '{tata ruang,bangunan,imb,pbg,sempadan}'),
    ('pendidikan', 'Pendidikan', 'pelayanan_dasar',
        '{sekolah,guru,siswa,ppdb,bos,ijazah,seragam}'),
    ('kesehatan', 'Kesehatan', 'pelayanan_dasar',
        '{puskesmas,posyandu,bpjs,obat,stunting,imunisasi,bidan}'),
    ('layanan_rumah_sakit', 'Layanan Rumah Sakit', 'pelayanan_dasar',
        '{rumah sakit,rsud,rawat inap,igd,dokter,antrean}'),
    ('administrasi_kependudukan', 'Administrasi Kependudukan', 'administrasi',
        '{ktp,e-ktp,kartu keluarga,kk,akta,kelahiran,kematian,pindah,nik}'),
    ('lingkungan_hidup', 'Lingkungan Hidup', 'lingkungan',
        '{sampah,limbah,pencemaran,sungai,asap,pembakaran,tambang}'),
    ('perhubungan', 'Perhubungan dan Lalu Lintas', 'infrastruktur',
        '{angkutan,terminal,parkir,lalu lintas,rambu,dermaga,speedboat}'),
    ('listrik_penerangan_jalan', 'Penerangan Jalan Umum', 'infrastruktur',
        '{lampu jalan,pju,penerangan,gelap}'),
    ('ketertiban_umum', 'Ketertiban Umum', 'ketertiban',
        '{pedagang kaki lima,pkl,miras,kebisingan,keamanan,perda}'),
    ('bencana', 'Bencana', 'kebencanaan',
        '{banjir,longsor,kebakaran,karhutla,angin puting beliung,evakuasi}'),
    ('sosial', 'Sosial dan Bantuan Sosial', 'kesejahteraan',
        '{bansos,pkh,bpnt,dtks,disabilitas,lansia,terlantar}'),
    ('air_bersih', 'Air Bersih', 'pelayanan_dasar',
        '{air,pdam,air bersih,pipa,keran,sumur}'),
    ('perumahan_permukiman', 'Perumahan dan Permukiman', 'infrastruktur',
        '{rumah tidak layak huni,rtlh,perumahan,permukiman,sanitasi}'),
    ('perizinan', 'Perizinan dan Investasi', 'administrasi',
        '{izin,perizinan,nib,oss,usaha,investasi}'),
    ('ketenagakerjaan', 'Ketenagakerjaan', 'kesejahteraan',
        '{kerja,pekerja,upah,phk,lowongan,buruh,tki}'),
    ('pertanian', 'Pertanian dan Perkebunan', 'ekonomi',
        '{petani,pupuk,bibit,sawit,karet,irigasi,ternak}'),
    ('informasi_publik', 'Informasi Publik', 'administrasi',
        '{informasi,website,ppid,data,internet,sinyal}'),
    ('kepegawaian', 'Kepegawaian', 'administrasi',
        '{asn,pns,pppk,honorer,disiplin pegawai,absensi}'),
    ('pelayanan_kecamatan', 'Pelayanan Kecamatan', 'administrasi',
        '{kantor camat,camat,kecamatan,surat keterangan,desa}'),
    ('pertanahan', 'Pertanahan', 'administrasi',
        '{tanah,sertifikat,sengketa lahan,batas tanah}'),
    ('pungutan_liar', 'Pungutan Liar dan Penyalahgunaan Wewenang', 'pengawasan',
        '{pungli,pungutan,suap,gratifikasi,korupsi}'),
    ('lainnya', 'Lainnya', 'lainnya', '{}')
ON CONFLICT (code) DO NOTHING;

-- category x '*' -> the dinas responsible for it, priority 10.
INSERT INTO rules (seed_key, category, kecamatan, opd_code, priority, note) VALUES
    ('skd:infrastruktur_jalan:*',       'infrastruktur_jalan',       '*', 'dpupr',       10, 'Jalan dan jembatan kabupaten'),
    ('skd:tata_ruang:*',                'tata_ruang',                '*', 'dpupr',       10, NULL),
    ('skd:pendidikan:*',                'pendidikan',                '*', 'disdikbud',   10, NULL),
    ('skd:kesehatan:*',                 'kesehatan',                 '*', 'dinkes',      10, NULL),
    ('skd:layanan_rumah_sakit:*',       'layanan_rumah_sakit',       '*', 'rsud',        10, NULL),
    ('skd:administrasi_kependudukan:*', 'administrasi_kependudukan', '*', 'disdukcapil', 10, NULL),
    ('skd:lingkungan_hidup:*',          'lingkungan_hidup',          '*', 'dlh',         10, NULL),
    ('skd:perhubungan:*',               'perhubungan',               '*', 'dishub',      10, NULL),
    ('skd:listrik_penerangan_jalan:*',  'listrik_penerangan_jalan',  '*', 'dishub',      10, 'PJU dikelola Dinas Perhubungan'),
    ('skd:ketertiban_umum:*',           'ketertiban_umum',           '*', 'satpolpp',    10, NULL),
    ('skd:bencana:*',                   'bencana',                   '*', 'bpbd',        10, NULL),
    ('skd:sosial:*',                    'sosial',                    '*', 'dinsos',      10, NULL),
    ('skd:air_bersih:*',                'air_bersih',                '*', 'pdam',        10, 'Wilayah layanan PDAM'),
    ('skd:perumahan_permukiman:*',      'perumahan_permukiman',      '*', 'disperkim',   10, NULL),
    ('skd:perizinan:*',                 'perizinan',                 '*', 'dpmptsp',     10, NULL),
    ('skd:ketenagakerjaan:*',           'ketenagakerjaan',           '*', 'disnaker',    10, NULL),
    ('skd:pertanian:*',                 'pertanian',                 '*', 'distan',      10, NULL),
    ('skd:informasi_publik:*',          'informasi_publik',          '*', 'diskominfo',  10, NULL),
    ('skd:kepegawaian:*',               'kepegawaian',               '*', 'bkpsdm',      10, NULL)
ON CONFLICT (seed_key) DO NOTHING;

-- Area-specific rules. pelayanan_kecamatan has no '*' rule on purpose: an unknown or
-- missing kecamatan needs the admin koordinator.
INSERT INTO rules (seed_key, category, kecamatan, opd_code, priority, note)
SELECT 'skd:pelayanan_kecamatan:' || k.code, 'pelayanan_kecamatan', k.name, k.opd_code, 10, NULL
FROM kecamatan k
WHERE k.code IN ('belitang', 'belitang_hilir', 'belitang_hulu', 'nanga_mahap',
                 'nanga_taman', 'sekadau_hilir', 'sekadau_hulu')
ON CONFLICT (seed_key) DO NOTHING;

-- Rural water outside the PDAM network (SPAM perdesaan) is Disperkim's: a higher priority
-- than the category-wide PDAM rule, so it wins there.
INSERT INTO rules (seed_key, category, kecamatan, opd_code, priority, note) VALUES
    ('skd:air_bersih:nanga_mahap',   'air_bersih', 'Nanga Mahap',   'disperkim', 20, 'SPAM perdesaan, di luar jaringan PDAM'),
    ('skd:air_bersih:nanga_taman',   'air_bersih', 'Nanga Taman',   'disperkim', 20, 'SPAM perdesaan, di luar jaringan PDAM'),
    ('skd:air_bersih:belitang_hulu', 'air_bersih', 'Belitang Hulu', 'disperkim', 20, 'SPAM perdesaan, di luar jaringan PDAM')
ON CONFLICT (seed_key) DO NOTHING;
