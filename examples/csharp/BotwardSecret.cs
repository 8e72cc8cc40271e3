// botward client for .NET on Windows bots: UiPath (Invoke Code, coded
// workflows, custom activities), Blue Prism code stages, or any program.
// .NET Framework 4.7.2 or later and .NET 6+; C# 5; no NuGet packages.
// References: System.Net.Http.dll, System.Runtime.Serialization.dll.
//
// The bot's certificate and its non-exportable key are in the bot account's
// personal store, Cert:\CurrentUser\My (packaging/windows/INSTALL.md), so the
// code runs as the robot's Windows user. botward's server certificate must
// chain to a CA in the host's trusted roots; it is always validated.
//
// Secrets are never written to a log or the console: botward's error
// messages (BotwardException) carry no secret values, and neither do the
// ones thrown here. Use the values at once, and dispose of the Secret.
//
// Blue Prism: paste the namespace's contents into the object's Initialise
// page, Code Options > Global Code; add the two DLLs under External
// References and System.Net.Http, System.Runtime.Serialization,
// System.Security.Cryptography.X509Certificates under Namespace Imports.
// A code stage with inputs Thumbprint and Server, output Connection String:
//
//     using (var cert = Botward.BotwardClient.FindCertificate(Thumbprint))
//     using (var secret = Botward.BotwardClient.Get("erp-db", cert))
//     {
//         var b = new System.Data.SqlClient.SqlConnectionStringBuilder();
//         b.DataSource = Server;
//         b.UserID = secret.Data["username"];
//         b.Password = secret.Data["password"];
//         ConnectionString = b.ConnectionString;   // a Password data item, never logged
//     }
//
// UiPath Invoke Code takes a method body only, not classes: use the
// text/plain endpoint there, which needs no JSON (arguments: in_Thumbprint,
// out_Password as String; mark the activity Private so nothing is logged).
// Use it for KV secrets; a dynamic secret needs Get() below, for its fields
// and lease belong together.
//
//     var store = new System.Security.Cryptography.X509Certificates.X509Store(
//         System.Security.Cryptography.X509Certificates.StoreName.My,
//         System.Security.Cryptography.X509Certificates.StoreLocation.CurrentUser);
//     store.Open(System.Security.Cryptography.X509Certificates.OpenFlags.ReadOnly);
//     var found = store.Certificates.Find(
//         System.Security.Cryptography.X509Certificates.X509FindType.FindByThumbprint, in_Thumbprint, true);
//     store.Close();
//     if (found.Count != 1) throw new Exception("bot certificate not found in CurrentUser\\My");
//     using (var handler = new System.Net.Http.HttpClientHandler())
//     {
//         handler.ClientCertificateOptions = System.Net.Http.ClientCertificateOption.Manual;
//         handler.ClientCertificates.Add(found[0]);
//         using (var http = new System.Net.Http.HttpClient(handler))
//         using (var response = http.GetAsync("https://127.0.0.1:8443/v1/secrets/erp-db?field=password").Result)
//         {
//             if (!response.IsSuccessStatusCode)
//                 throw new Exception("botward: " + response.Content.ReadAsStringAsync().Result);
//             out_Password = response.Content.ReadAsStringAsync().Result;
//         }
//     }
//
// Scripts that have PEM files can call botward.exe instead, also over the
// named pipe, where botward checks the calling account and program too:
//     botward.exe get --addr npipe:////./pipe/botward --cert C --key K --ca CA erp-db --field password

using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Http;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Botward
{
    /// <summary>A secret's fields and, for dynamic secrets, its lease.</summary>
    public sealed class Secret : IDisposable
    {
        private readonly Dictionary<string, string> data;

        internal Secret(string name, Dictionary<string, string> data, string leaseId, long leaseTtlSeconds)
        {
            Name = name;
            this.data = data;
            LeaseId = leaseId;
            LeaseTtlSeconds = leaseTtlSeconds;
        }

        public string Name { get; private set; }

        /// <summary>Field name to value. Do not log it.</summary>
        public IReadOnlyDictionary<string, string> Data
        {
            get { return data; }
        }

        /// <summary>The lease to release when done (null for KV secrets).</summary>
        public string LeaseId { get; private set; }

        public long LeaseTtlSeconds { get; private set; }

        /// <summary>
        /// Drops the references to the values. .NET strings cannot be wiped;
        /// keep them short-lived and release leases (ReleaseLease) as soon as
        /// the job is done.
        /// </summary>
        public void Dispose()
        {
            data.Clear();
        }

        public override string ToString()
        {
            // Never the values.
            return "Secret " + Name;
        }
    }

    /// <summary>An error answer from botward: code, message and request id, never a secret.</summary>
    public sealed class BotwardException : Exception
    {
        public BotwardException(string code, string message, string requestId)
            : base("botward: " + code + ": " + message + (requestId != null ? " (request " + requestId + ")" : ""))
        {
            Code = code;
            RequestId = requestId;
        }

        public string Code { get; private set; }

        public string RequestId { get; private set; }
    }

    public static class BotwardClient
    {
        /// <summary>botward's TCP address; BOTWARD_ADDR overrides it.</summary>
        public static string Address
        {
            get
            {
                var env = Environment.GetEnvironmentVariable("BOTWARD_ADDR");
                return string.IsNullOrEmpty(env) ? "https://127.0.0.1:8443" : env.TrimEnd('/');
            }
        }

        /// <summary>The bot's certificate, with its private key, from CurrentUser\My.</summary>
        public static X509Certificate2 FindCertificate(string thumbprint)
        {
            var store = new X509Store(StoreName.My, StoreLocation.CurrentUser);
            try
            {
                store.Open(OpenFlags.ReadOnly | OpenFlags.OpenExistingOnly);
                var found = store.Certificates.Find(X509FindType.FindByThumbprint, thumbprint.Replace(" ", ""), true);
                if (found.Count != 1 || !found[0].HasPrivateKey)
                {
                    throw new InvalidOperationException(
                        "no valid certificate with a private key and thumbprint " + thumbprint + " in CurrentUser\\My");
                }
                return found[0];
            }
            finally
            {
                store.Close();
            }
        }

        /// <summary>GET /v1/secrets/{name}: all fields, and the lease of a dynamic secret.</summary>
        public static Secret Get(string name, X509Certificate2 certificate)
        {
            var body = Send(HttpMethod.Get, "/v1/secrets/" + Uri.EscapeDataString(name), certificate);
            var response = Parse<SecretResponse>(body);
            Array.Clear(body, 0, body.Length);
            if (response == null || response.Data == null)
            {
                throw new BotwardException("bad_response", "the answer has no data", null);
            }
            return new Secret(
                response.Name,
                response.Data,
                response.Lease != null ? response.Lease.Id : null,
                response.Lease != null ? response.Lease.TtlSeconds : 0);
        }

        /// <summary>GET /v1/secrets/{name}?field=F: one field of a KV secret, as text.</summary>
        public static string GetField(string name, string field, X509Certificate2 certificate)
        {
            var body = Send(
                HttpMethod.Get,
                "/v1/secrets/" + Uri.EscapeDataString(name) + "?field=" + Uri.EscapeDataString(field),
                certificate);
            try
            {
                return Encoding.UTF8.GetString(body);
            }
            finally
            {
                Array.Clear(body, 0, body.Length);
            }
        }

        /// <summary>DELETE /v1/leases/{id}: revokes the credentials at Vault now.</summary>
        public static void ReleaseLease(string leaseId, X509Certificate2 certificate)
        {
            if (string.IsNullOrEmpty(leaseId))
            {
                return;
            }
            Send(HttpMethod.Delete, "/v1/leases/" + Uri.EscapeDataString(leaseId), certificate);
        }

        private static byte[] Send(HttpMethod method, string path, X509Certificate2 certificate)
        {
            var address = Address;
            if (!address.StartsWith("https://", StringComparison.Ordinal))
            {
                throw new ArgumentException("BOTWARD_ADDR must be an https:// address");
            }
            // .NET Framework hosts that predate 4.7 defaults may not offer TLS 1.2.
            ServicePointManager.SecurityProtocol |= SecurityProtocolType.Tls12;

            using (var handler = new HttpClientHandler())
            {
                handler.ClientCertificateOptions = ClientCertificateOption.Manual;
                handler.ClientCertificates.Add(certificate);
                handler.UseProxy = false;
                using (var http = new HttpClient(handler))
                using (var request = new HttpRequestMessage(method, address + path))
                {
                    http.Timeout = TimeSpan.FromSeconds(10);
                    HttpResponseMessage response;
                    try
                    {
                        response = http.SendAsync(request).GetAwaiter().GetResult();
                    }
                    catch (HttpRequestException e)
                    {
                        var inner = e.InnerException != null ? e.InnerException.Message : e.Message;
                        throw new BotwardException("connection", "cannot reach botward at " + address + ": " + inner, null);
                    }
                    using (response)
                    {
                        var body = response.Content.ReadAsByteArrayAsync().GetAwaiter().GetResult();
                        if (response.IsSuccessStatusCode)
                        {
                            return body;
                        }
                        var error = TryParse<ErrorResponse>(body);
                        if (error != null && error.Error != null && error.Error.Code != null)
                        {
                            throw new BotwardException(error.Error.Code, error.Error.Message, error.Error.RequestId);
                        }
                        throw new BotwardException("http_" + (int)response.StatusCode, response.ReasonPhrase, null);
                    }
                }
            }
        }

        private static T Parse<T>(byte[] json) where T : class
        {
            var settings = new DataContractJsonSerializerSettings();
            settings.UseSimpleDictionaryFormat = true;
            var serializer = new DataContractJsonSerializer(typeof(T), settings);
            using (var stream = new MemoryStream(json, false))
            {
                return (T)serializer.ReadObject(stream);
            }
        }

        private static T TryParse<T>(byte[] json) where T : class
        {
            try
            {
                return Parse<T>(json);
            }
            catch (SerializationException)
            {
                return null;
            }
        }

        [DataContract]
        private sealed class SecretResponse
        {
            [DataMember(Name = "name")]
            public string Name { get; set; }

            // Values as strings (what database and KV credentials hold).
            [DataMember(Name = "data")]
            public Dictionary<string, string> Data { get; set; }

            [DataMember(Name = "lease", IsRequired = false)]
            public LeaseResponse Lease { get; set; }
        }

        [DataContract]
        private sealed class LeaseResponse
        {
            [DataMember(Name = "id")]
            public string Id { get; set; }

            [DataMember(Name = "ttl_seconds")]
            public long TtlSeconds { get; set; }
        }

        [DataContract]
        private sealed class ErrorResponse
        {
            [DataMember(Name = "error")]
            public ErrorBody Error { get; set; }
        }

        [DataContract]
        private sealed class ErrorBody
        {
            [DataMember(Name = "code")]
            public string Code { get; set; }

            [DataMember(Name = "message")]
            public string Message { get; set; }

            [DataMember(Name = "request_id")]
            public string RequestId { get; set; }
        }
    }

    /// <summary>
    /// The whole flow for a dynamic secret, as a bot would write it: get,
    /// use, dispose, release.
    /// </summary>
    public static class Example
    {
        public static int CountOpenInvoices(string thumbprint, string server)
        {
            using (var cert = BotwardClient.FindCertificate(thumbprint))
            {
                var secret = BotwardClient.Get("erp-db-login", cert);
                try
                {
                    var b = new System.Data.SqlClient.SqlConnectionStringBuilder();
                    b.DataSource = server;
                    b.InitialCatalog = "erp";
                    b.UserID = secret.Data["username"];
                    b.Password = secret.Data["password"];
                    b.Encrypt = true;
                    using (var connection = new System.Data.SqlClient.SqlConnection(b.ConnectionString))
                    {
                        b.Clear();
                        connection.Open();
                        using (var command = connection.CreateCommand())
                        {
                            command.CommandText = "SELECT COUNT(*) FROM dbo.invoices WHERE status = 'open'";
                            return Convert.ToInt32(command.ExecuteScalar());
                        }
                    }
                }
                finally
                {
                    var leaseId = secret.LeaseId;
                    secret.Dispose();
                    BotwardClient.ReleaseLease(leaseId, cert);
                }
            }
        }
    }
}
