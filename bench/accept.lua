-- wrk script: POST a fresh complaint per request (unique external_id), as a portal would.
-- Environment: SP4N_KEY (portal API key bound to source "bench"), SP4N_RECEIVED_AT.
local counter = 0
local thread_id = 0
local categories = {
  {"infrastruktur_jalan", "Belitang Hilir"}, {"kesehatan", "Nanga Taman"},
  {"pendidikan", "Sekadau Hilir"}, {"pelayanan_kecamatan", "Nanga Mahap"},
  {"administrasi_kependudukan", "Belitang"},
}
local run_id = tostring(os.time()) .. tostring(math.random(100000, 999999))

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("SP4N_KEY")
  received_at = os.getenv("SP4N_RECEIVED_AT")
end

function request()
  counter = counter + 1
  local c = categories[(counter % #categories) + 1]
  local body = string.format(
    '{"source":"bench","external_id":"wrk-%s-%d-%d","received_at":"%s",' ..
    '"classification":"pengaduan","category":"%s","title":"Laporan uji beban %d",' ..
    '"description":"Laporan uji beban untuk mengukur kapasitas sp4n pada mesin ini.",' ..
    '"location":{"kecamatan":"%s","desa":"Desa Uji %d"},' ..
    '"reporter":{"name":"Penguji","phone":"+6281200000000"}}',
    run_id, tid, counter, received_at, c[1], counter, c[2], math.random(0, 499))
  return wrk.format(nil, "/v1/complaints", nil, body)
end
